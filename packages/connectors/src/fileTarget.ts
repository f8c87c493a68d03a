/**
 * The file target alone, as `@certctl/connectors/targets/file`: the embedded default target, without
 * the nginx, F5 and IIS connectors (SSH, iControl REST, WinRM with NTLM and PKCS#12) that
 * `@certctl/connectors/targets` also loads. The agent's bundled bin imports this entry at start and
 * the targets entry only when a target of another type is first used.
 */
export { File, FileConfig } from "./targets/File.js"
