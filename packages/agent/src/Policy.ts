import * as fs from "node:fs"
import * as path from "node:path"
import type { F5Config, FileConfig, IisConfig, NginxConfig } from "@certctl/connectors/targets"
import { ConfigError, Effect, Either, Schema } from "effect"
import {
  addressAllowed,
  type CommandRule,
  commandAllowed,
  directoryAllowed,
  formatAddress,
  listed,
  modeAllowed,
  parseAddress,
  remoteDirectoryAllowed
} from "./internal/policyRules.js"

/**
 * The agent's local policy: what the control plane may make this host do. A target's config
 * comes from the server, and its fields reach the host (a directory written, a command run, a
 * host connected to), so a stolen admin key could otherwise run anything on every agent. The
 * policy is read from the agent's own file (`CERTCTL_AGENT_POLICY`) at start and never from the
 * server; a deployment it does not allow is refused and reported with the field that refused it.
 *
 * Each target type has its own section; a type without a section is refused outright. Without a
 * policy file the agent allows only `file` targets writing under `<key dir>/deploy`, with the
 * default key mode 0600, no reload command and no verify address (`defaultPolicy`).
 */

const Text = (max: number) => Schema.String.pipe(Schema.maxLength(max))
const List = <A, I>(item: Schema.Schema<A, I>) => Schema.Array(item).pipe(Schema.maxItems(1000))

const AbsolutePath = Text(4096).pipe(
  Schema.filter(
    (s) => (path.isAbsolute(s) && !s.includes("\0")) || `must be an absolute path, got ${JSON.stringify(s)}`
  )
)
const RemotePath = Text(4096).pipe(
  Schema.filter(
    (s) => (s.startsWith("/") && !s.includes("\0")) || `must be an absolute POSIX path, got ${JSON.stringify(s)}`
  )
)
const Address = Text(300).pipe(
  Schema.filter(
    (s) =>
      parseAddress(s) !== undefined || `must be "host:port" or "host:*" (IPv6 as "[::1]:443"), got ${JSON.stringify(s)}`
  )
)
const Mode = Schema.String.pipe(
  Schema.pattern(/^0?[0-7]{3}$/, { message: () => "must be an octal file mode such as 0600" })
)
const Pattern = Text(1000).pipe(
  Schema.filter((s) => {
    try {
      new RegExp(s, "u")
      return true
    } catch (e) {
      return `is not a regular expression: ${(e as Error).message}`
    }
  })
)
/** The exact command, or `{ "pattern": "…" }`: a regular expression the whole command must match. */
const Command = Schema.Union(Text(4096).pipe(Schema.minLength(1)), Schema.Struct({ pattern: Pattern }))

const strict = { onExcessProperty: "error" as const }

export const FilePolicy = Schema.Struct({
  /** `directory` must be one of these or lie below one (symbolic links resolved). */
  directories: List(AbsolutePath),
  /** `reload_command` must be one of these; none: no reload command is allowed. */
  reload_commands: Schema.optionalWith(List(Command), { default: () => [] }),
  /** `key_mode` must be one of these. */
  key_modes: Schema.optionalWith(List(Mode), { default: () => ["0600"] }),
  /** `verify_address` ("host:port") must be one of these. */
  verify_addresses: Schema.optionalWith(List(Address), { default: () => [] })
}).annotations({ parseOptions: strict })

export const NginxPolicy = Schema.Struct({
  /** `host:port` the agent may open SSH to. */
  hosts: List(Address),
  /** `cert_path` on that host must be one of these or below one. */
  cert_paths: List(RemotePath),
  /** `test_command` and `reload_command` must be among these. */
  commands: Schema.optionalWith(List(Command), { default: () => ["nginx -t", "nginx -s reload"] }),
  /** Where the served serial may be checked besides the SSH host itself (`verify_host:verify_port`). */
  verify_addresses: Schema.optionalWith(List(Address), { default: () => [] })
}).annotations({ parseOptions: strict })

const RemoteApi = Schema.Struct({
  /** `host:port` of the management API the agent may call (F5 iControl REST, IIS WinRM). */
  hosts: List(Address),
  /** `verify_address` ("host:port") must be one of these. */
  verify_addresses: Schema.optionalWith(List(Address), { default: () => [] })
}).annotations({ parseOptions: strict })

export const PolicyFile = Schema.Struct({
  version: Schema.optionalWith(Schema.Literal(1), { default: () => 1 as const }),
  file: Schema.optional(FilePolicy),
  nginx: Schema.optional(NginxPolicy),
  f5: Schema.optional(RemoteApi),
  iis: Schema.optional(RemoteApi)
}).annotations({ parseOptions: strict })

export type Policy = typeof PolicyFile.Type & {
  /** Where the policy came from, for messages: the file, or "the default policy". */
  readonly source: string
}

/** No policy file: `file` targets under `<keyDir>/deploy` only, key mode 0600, nothing else. */
export const defaultPolicy = (keyDir: string): Policy => ({
  version: 1,
  source: "the default policy (no CERTCTL_AGENT_POLICY)",
  file: {
    directories: [path.resolve(keyDir, "deploy")],
    reload_commands: [],
    key_modes: ["0600"],
    verify_addresses: []
  }
})

export const decode = (raw: unknown, source: string): Either.Either<Policy, string> =>
  Either.map(
    Either.mapLeft(
      Schema.decodeUnknownEither(PolicyFile, { errors: "all", onExcessProperty: "error" })(raw),
      (e) => e.message
    ),
    (p) => ({ ...p, source })
  )

/**
 * A policy written in code, e.g. by an embedder running the agent in-process:
 * `Policy.make({ file: { directories: ["/srv/www"] } })`. An invalid policy throws: it is a
 * programming error, not input.
 */
export const make = (input: typeof PolicyFile.Encoded, source = "a policy given in code"): Policy => ({
  ...Schema.decodeUnknownSync(PolicyFile, { errors: "all", onExcessProperty: "error" })(input),
  source
})

/** Reads and decodes the policy file; a bad file is a `ConfigError` naming CERTCTL_AGENT_POLICY. */
export const readFile = (file: string): Effect.Effect<Policy, ConfigError.ConfigError> =>
  Effect.try({
    try: (): unknown => JSON.parse(fs.readFileSync(file, "utf8")),
    catch: (e) => ConfigError.InvalidData(["CERTCTL_AGENT_POLICY"], `${file}: ${(e as Error).message}`)
  }).pipe(
    Effect.flatMap((raw) =>
      Either.match(decode(raw, path.resolve(file)), {
        onLeft: (message) =>
          Effect.fail(ConfigError.InvalidData(["CERTCTL_AGENT_POLICY"], `${file} is invalid: ${message}`)),
        onRight: Effect.succeed
      })
    )
  )

/** A deployment the policy does not allow: `field` is the policy's, e.g. "file.reload_commands". */
export interface Refusal {
  readonly field: string
  readonly message: string
}

const refuse = (policy: Policy, field: string, what: string, allowed: ReadonlyArray<CommandRule>): Refusal => ({
  field,
  message: `refused by the agent's local policy (${field} in ${policy.source}): ${what} is not allowed; ${field} allows ${listed(allowed)}`
})

const checks = {
  file: (policy: Policy, c: FileConfig): Refusal | undefined => {
    const p = policy.file
    if (!p) return undefined
    if (!directoryAllowed(p.directories, c.directory))
      return refuse(policy, "file.directories", `directory ${JSON.stringify(c.directory)}`, p.directories)
    if (!modeAllowed(p.key_modes, c.key_mode))
      return refuse(policy, "file.key_modes", `key_mode ${JSON.stringify(c.key_mode)}`, p.key_modes)
    if (c.reload_command !== undefined && !commandAllowed(p.reload_commands, c.reload_command))
      return refuse(
        policy,
        "file.reload_commands",
        `reload_command ${JSON.stringify(c.reload_command)}`,
        p.reload_commands
      )
    if (c.verify_address && !addressAllowed(p.verify_addresses, c.verify_address.host, c.verify_address.port))
      return refuse(
        policy,
        "file.verify_addresses",
        `verify_address ${formatAddress(c.verify_address.host, c.verify_address.port)}`,
        p.verify_addresses
      )
    return undefined
  },
  nginx: (policy: Policy, c: NginxConfig): Refusal | undefined => {
    const p = policy.nginx
    if (!p) return undefined
    if (!addressAllowed(p.hosts, c.host, c.port))
      return refuse(policy, "nginx.hosts", `SSH to ${formatAddress(c.host, c.port)}`, p.hosts)
    if (!remoteDirectoryAllowed(p.cert_paths, c.cert_path))
      return refuse(policy, "nginx.cert_paths", `cert_path ${JSON.stringify(c.cert_path)}`, p.cert_paths)
    for (const [field, command] of [
      ["test_command", c.test_command],
      ["reload_command", c.reload_command]
    ] as const)
      if (!commandAllowed(p.commands, command))
        return refuse(policy, "nginx.commands", `${field} ${JSON.stringify(command)}`, p.commands)
    const verifyHost = c.verify_host ?? c.host
    if (verifyHost !== c.host && !addressAllowed(p.verify_addresses, verifyHost, c.verify_port))
      return refuse(
        policy,
        "nginx.verify_addresses",
        `verification at ${formatAddress(verifyHost, c.verify_port)}`,
        p.verify_addresses
      )
    return undefined
  },
  f5: (policy: Policy, c: F5Config): Refusal | undefined => {
    const p = policy.f5
    if (!p) return undefined
    if (!addressAllowed(p.hosts, c.host, c.port))
      return refuse(policy, "f5.hosts", `iControl REST at ${formatAddress(c.host, c.port)}`, p.hosts)
    if (c.verify_address && !addressAllowed(p.verify_addresses, c.verify_address.host, c.verify_address.port))
      return refuse(
        policy,
        "f5.verify_addresses",
        `verify_address ${formatAddress(c.verify_address.host, c.verify_address.port)}`,
        p.verify_addresses
      )
    return undefined
  },
  iis: (policy: Policy, c: IisConfig): Refusal | undefined => {
    const p = policy.iis
    if (!p) return undefined
    const port = c.port ?? (c.use_https ? 5986 : 5985)
    if (!addressAllowed(p.hosts, c.host, port))
      return refuse(policy, "iis.hosts", `WinRM at ${formatAddress(c.host, port)}`, p.hosts)
    if (c.verify_address && !addressAllowed(p.verify_addresses, c.verify_address.host, c.verify_address.port))
      return refuse(
        policy,
        "iis.verify_addresses",
        `verify_address ${formatAddress(c.verify_address.host, c.verify_address.port)}`,
        p.verify_addresses
      )
    return undefined
  }
}

/**
 * Whether the policy allows a target of `type` with this config (decoded by the type's schema,
 * so defaults such as nginx's commands are checked too). Undefined when it does.
 */
export const check = (policy: Policy, type: string, config: unknown): Refusal | undefined => {
  const section = (type === "file" || type === "nginx" || type === "f5" || type === "iis") && policy[type]
  if (!section)
    return {
      field: type,
      message: `refused by the agent's local policy (${policy.source}): it has no "${type}" section, so "${type}" targets are not allowed on this host`
    }
  switch (type) {
    case "file":
      return checks.file(policy, config as FileConfig)
    case "nginx":
      return checks.nginx(policy, config as NginxConfig)
    case "f5":
      return checks.f5(policy, config as F5Config)
    case "iis":
      return checks.iis(policy, config as IisConfig)
  }
}
