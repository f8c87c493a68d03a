/**
 * The `nginx` target's configuration: where to connect, which files, which commands. Decoding
 * refuses what cannot work (malformed keys, paths with "..", names with directories) up front.
 */
import { isIP } from "node:net"
import { Redacted, Schema } from "effect"
import { Bounded, Limits } from "../../internal/bounded.js"
import { normalizeFingerprint, privateKeyProblem } from "./sshClient.js"

export const quote = (s: string) => JSON.stringify(s.length > 80 ? s.slice(0, 80) + "…" : s)
export const label = "[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
const hostnameRe = new RegExp(`^(?=.{1,253}$)${label}(?:\\.${label})*$`)

const Host = Bounded(Limits.host).pipe(
  Schema.filter((s) => isIP(s) !== 0 || hostnameRe.test(s) || `must be a hostname or IP address, got ${quote(s)}`)
)
const Port = Schema.Int.pipe(
  Schema.filter((n) => (n >= 1 && n <= 65535) || `must be a port number between 1 and 65535, got ${n}`)
)
const Millis = (min: number, max: number) =>
  Schema.Int.pipe(Schema.filter((n) => (n >= min && n <= max) || `must be between ${min} and ${max} ms, got ${n}`))
const Command = Bounded(Limits.command).pipe(Schema.filter((s) => s.trim().length > 0 || "must be a non-empty command"))
const AbsoluteDir = Bounded(Limits.path).pipe(
  Schema.filter((s) => {
    if (!s.startsWith("/")) return `must be an absolute directory path on the host, got ${quote(s)}`
    if (s.includes("\0") || s.split("/").includes("..")) return `must not contain NUL or ".." segments`
    return true
  })
)
/** A file name (no directories) in which `{domain}` is replaced by the certificate's domain. */
const FileNameTemplate = Bounded(Limits.name).pipe(
  Schema.filter(
    (s) =>
      (/^[A-Za-z0-9._{}-]+$/.test(s) && s !== "." && s !== "..") ||
      `must be a plain file name (letters, digits, ".", "_", "-", "{domain}"), got ${quote(s)}`
  )
)
const Fingerprint = Bounded(100).pipe(
  Schema.filter(
    (s) =>
      normalizeFingerprint(s) !== undefined ||
      `must be an OpenSSH SHA256 fingerprint like "SHA256:<43 base64 chars>" (see ssh-keygen -l -E sha256), got ${quote(s)}`
  )
)

const NginxConfigFields = Schema.Struct({
  host: Host,
  port: Schema.optionalWith(Port, { default: () => 22 }),
  ssh_user: Bounded(64).pipe(Schema.filter((s) => /^[A-Za-z0-9._-]{1,64}$/.test(s) || "must be a user name")),
  /** Private key text (OpenSSH, PEM or PPK), not a path: the agent/server hands it over sealed. */
  ssh_key: Schema.Redacted(Bounded(Limits.sshKey)),
  ssh_key_passphrase: Schema.optional(Schema.Redacted(Bounded(Limits.secret))),
  host_key_sha256: Schema.optional(Fingerprint),
  trust_on_first_use: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  cert_path: AbsoluteDir,
  file_names: Schema.optional(
    Schema.Struct({
      certificate: Schema.optional(FileNameTemplate),
      key: Schema.optional(FileNameTemplate)
    })
  ),
  test_command: Schema.optionalWith(Command, { default: () => "nginx -t" }),
  reload_command: Schema.optionalWith(Command, { default: () => "nginx -s reload" }),
  verify_host: Schema.optional(Host),
  verify_port: Schema.optionalWith(Port, { default: () => 443 }),
  connect_timeout_ms: Schema.optionalWith(Millis(100, 300_000), { default: () => 10_000 }),
  command_timeout_ms: Schema.optionalWith(Millis(100, 600_000), { default: () => 60_000 }),
  /** nginx reloads asynchronously: keep probing this long for the new serial. */
  verify_timeout_ms: Schema.optionalWith(Millis(0, 300_000), { default: () => 10_000 })
})

/** Key problems need the passphrase too, so they are checked on the whole struct. */
export const keyIssue = (c: typeof NginxConfigFields.Type) => {
  const problem = privateKeyProblem(
    Redacted.value(c.ssh_key),
    c.ssh_key_passphrase ? Redacted.value(c.ssh_key_passphrase) : undefined
  )
  return problem ? { path: ["ssh_key"], message: problem } : undefined
}

const distinctNames = (c: typeof NginxConfigFields.Type) =>
  certTemplate(c) !== keyTemplate(c) || {
    path: ["file_names"],
    message: "file_names.certificate and file_names.key must differ"
  }

export const NginxConfig = NginxConfigFields.pipe(
  Schema.filter((c) => keyIssue(c) ?? distinctNames(c)),
  Schema.annotations({ identifier: "NginxConfig" })
)
export type NginxConfig = typeof NginxConfig.Type

export const certTemplate = (c: typeof NginxConfigFields.Type) => c.file_names?.certificate ?? "{domain}.crt"
export const keyTemplate = (c: typeof NginxConfigFields.Type) => c.file_names?.key ?? "{domain}.key"
