/**
 * The former PKI module, kept while callers move to its parts: `Pem` (PEM text, PkiError), `Csr`
 * (CSR parsing and policy) and `Certificate` (certificates, chains, names). Re-exports only.
 */
export * from "./Certificate.js"
export * from "./Csr.js"
export * from "./Pem.js"
