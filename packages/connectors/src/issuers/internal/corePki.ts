// TODO(barrel): import these from "@certctl/core" once core's barrel exports KeyAlgorithm and Pki;
// until then they are reached by path so connectors can use them.
export * as KeyAlgorithm from "../../../../core/src/KeyAlgorithm.js"
export * as Pki from "../../../../core/src/Pki.js"
