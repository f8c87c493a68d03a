import * as fs from "node:fs"
import { X509Certificate } from "node:crypto"
import * as os from "node:os"
import { Models } from "@certctl/core"
import { Config, ConfigError, Effect, Either, Option, Redacted, Schema } from "effect"
import { parseListen } from "./Health.js"
import * as Policy from "./Policy.js"

/**
 * Agent settings as Effect `Config`: the `CERTCTL_*` environment variables (through the current
 * `ConfigProvider`) over a JSON file named by `CERTCTL_AGENT_CONFIG`, the environment winning. A
 * bad value is a `ConfigError` naming the setting, never a thrown exception. Target connection
 * settings may be given in the file per target id; they override what the control plane sends,
 * so credentials can stay on the agent's host only.
 *
 * An empty variable counts as unset: compose passes an unset variable as an empty one.
 */

const Text = Schema.String.pipe(Schema.maxLength(4096))

/** The longest drift-check interval: a week. */
export const maxDriftInterval = 604_800
export const defaultDriftInterval = 900
/**
 * Work items one agent runs at once. A burst of certificates lists up to 100 items per poll; run
 * all at once, their requests overflowed the control plane's admission (503s, then each item's
 * back-off of up to a minute) and their key generation and fsyncs competed for the same core.
 */
export const defaultWorkConcurrency = 8

export const AgentFileConfig = Schema.Struct({
  server_url: Schema.optional(Text),
  /** The agent's local policy file (see Policy.ts); the environment's CERTCTL_AGENT_POLICY wins. */
  policy_file: Schema.optional(Text),
  /** Talk plain http:// to a control plane that is not on loopback (see `insecureServerUrl`). */
  allow_insecure_http: Schema.optional(Schema.Boolean),
  api_key: Schema.optional(Text),
  agent_id: Schema.optional(Text),
  key_dir: Schema.optional(Text),
  key_passphrase: Schema.optional(Text),
  poll_wait_seconds: Schema.optional(Schema.Int.pipe(Schema.between(0, 60))),
  heartbeat_seconds: Schema.optional(Schema.Number.pipe(Schema.between(1, 3600))),
  /** Seconds between drift checks of the targets (see Drift.ts); 0 turns them off. */
  drift_interval: Schema.optional(Schema.Int.pipe(Schema.between(0, maxDriftInterval))),
  /** How old the stored API key may get before the agent rotates it: "30d", "12h", "90m", "45s", or "off". */
  key_rotation: Schema.optional(Schema.String.pipe(Schema.maxLength(20))),
  /** "auto": get, present and renew a TLS client certificate for mTLS (see ClientCert.ts); "off". */
  client_cert: Schema.optional(Schema.Literal("auto", "off")),
  /** Renew the client certificate when less than this is left: "10d", "36h", … */
  client_cert_renew_before: Schema.optional(Schema.String.pipe(Schema.maxLength(20))),
  /** PEM file of the CA to trust for the control plane's TLS certificate, instead of Node's roots. */
  server_ca_file: Schema.optional(Text),
  /** Serve GET /healthz on this address, e.g. "127.0.0.1:9090" (see Health.ts). */
  health_listen: Schema.optional(Schema.String.pipe(Schema.maxLength(300))),
  http01: Schema.optional(
    Schema.Struct({
      /** Serve challenges on this address, e.g. "0.0.0.0:80". */
      listen: Schema.optional(Schema.String.pipe(Schema.maxLength(300))),
      /** Or write them into this webroot (…/.well-known/acme-challenge/<token>). */
      webroot: Schema.optional(Text)
    })
  ),
  targets: Schema.optional(
    Schema.Record({
      key: Schema.String.pipe(Schema.maxLength(200)),
      value: Schema.Record({ key: Schema.String.pipe(Schema.maxLength(200)), value: Schema.Unknown })
    })
  )
})
export type AgentFileConfig = typeof AgentFileConfig.Type

/** The agent's settings with its identity settled (see Enrollment.ts). */
export interface AgentConfig {
  readonly serverUrl: string
  readonly apiKey: Redacted.Redacted<string>
  readonly agentId: string
  readonly keyDir: string
  readonly keyPassphrase?: Redacted.Redacted<string>
  readonly pollWaitSeconds: number
  readonly heartbeatSeconds: number
  /** Work items (CSRs, deployments, removals) run at once (`CERTCTL_AGENT_WORK_CONCURRENCY`). */
  readonly workConcurrency?: number
  /** Seconds between drift checks of the targets (`CERTCTL_AGENT_DRIFT_INTERVAL`); 0: none. */
  readonly driftIntervalSeconds?: number
  readonly healthListen?: string
  readonly http01?: { readonly listen?: string; readonly webroot?: string }
  readonly targets: Readonly<Record<string, Readonly<Record<string, unknown>>>>
  /** The local policy file's (`CERTCTL_AGENT_POLICY`); absent: `Policy.defaultPolicy(keyDir)`. */
  readonly policy?: Policy.Policy
  /** Rotate the stored API key when it is this old (`CERTCTL_KEY_ROTATION`); 0 turns rotation off. */
  readonly keyRotationSeconds?: number
  /** The key is the one stored in the key directory (enrolled or rotated), so rotation can replace it. */
  readonly keyStored?: boolean
  /** `CERTCTL_AGENT_CLIENT_CERT`: "auto" gets, presents and renews a TLS client certificate. */
  readonly clientCert?: "auto" | "off"
  /** Renew the client certificate when less than this many seconds are left (`CERTCTL_CLIENT_CERT_RENEW_BEFORE`). */
  readonly clientCertRenewBeforeSeconds?: number
  /** The PEM of `CERTCTL_SERVER_CA_FILE`: the only CA trusted for the control plane's certificate. */
  readonly serverCa?: string
}

/**
 * What `load` reads: an `AgentConfig` whose API key may still be missing. Then the identity comes
 * from the key stored at enrollment, or from exchanging the enrollment token (see Enrollment.ts).
 */
export interface AgentSettings extends Omit<AgentConfig, "apiKey"> {
  readonly apiKey?: Redacted.Redacted<string>
  /** `CERTCTL_ENROLLMENT_TOKEN`, or the content of `CERTCTL_ENROLLMENT_TOKEN_FILE`. */
  readonly enrollmentToken?: Redacted.Redacted<string>
  /** Whether `agentId` was configured, rather than derived from the node or host name. */
  readonly agentIdExplicit: boolean
}

export const defaultServerUrl = "http://127.0.0.1:8443"
export const defaultKeyDir = "./.certctl/keys"

/**
 * The default agent id of an enrolling agent: the Kubernetes node name (`NODE_NAME`, from the
 * downward API) or the host name, lowercased and cut to the agent-id alphabet.
 */
export const defaultAgentId = (nodeName?: string): string =>
  (nodeName || os.hostname())
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, "-")
    .replace(/^[^a-z0-9]+/, "")
    .slice(0, 64)

const agentIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

const invalid = (name: string, message: string) => ConfigError.InvalidData([name], message)

/** A variable, empty counting as unset. */
const text = (name: string): Config.Config<Option.Option<string>> =>
  Config.string(name).pipe(Config.option, Config.map(Option.filter((s) => s !== "")))

/** A variable, or else the file's value. */
const orFile = <A>(env: Config.Config<Option.Option<A>>, file: A | undefined) =>
  Config.map(
    env,
    Option.orElse(() => Option.fromNullable(file))
  )

const number = (name: string, options: { readonly min: number; readonly max: number; readonly integer: boolean }) =>
  Config.mapOrFail(text(name), (o) => {
    if (Option.isNone(o)) return Either.right(Option.none<number>())
    const n = Number(o.value.trim())
    const ok = o.value.trim() !== "" && Number.isFinite(n) && (!options.integer || Number.isInteger(n))
    return ok && n >= options.min && n <= options.max
      ? Either.right(Option.some(n))
      : Either.left(
          invalid(
            name,
            `must be ${options.integer ? "an integer" : "a number"} from ${options.min} to ${options.max}, got "${o.value}"`
          )
        )
  })

/** "30d", "12h", "90m", "45s" → seconds; "off" or "0" → 0 (no rotation). */
export const parseRotation = (value: string): number | undefined => {
  const v = value.trim().toLowerCase()
  if (v === "off" || v === "0") return 0
  const m = /^(\d{1,7})(s|m|h|d)$/.exec(v)
  if (!m) return undefined
  const n = Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as "s" | "m" | "h" | "d"]
  return Math.max(n, 0)
}

/** How long the server's agent client certificates live. */
const clientCertLifetimeSeconds = Models.clientCertLifetimeDays * 86_400

/** Parses `CERTCTL_CLIENT_CERT_RENEW_BEFORE`: a duration shorter than the certificate's lifetime. */
const renewBefore = (value: string) => {
  const seconds = parseRotation(value)
  return seconds !== undefined && seconds > 0 && seconds < clientCertLifetimeSeconds
    ? Either.right(seconds)
    : Either.left(
        invalid(
          "CERTCTL_CLIENT_CERT_RENEW_BEFORE",
          `must be a duration such as 10d, 36h or 90m, shorter than the client certificate's 30 days; got "${value}"`
        )
      )
}

const listenSetting = (name: string, value: string) =>
  parseListen(value) ? Either.right(value) : Either.left(invalid(name, `must be host:port, got "${value}"`))

/** `host:port` with an optional host (":80" listens on every address), as Http01.responder takes it. */
const http01Listen = (value: string) => {
  const m = /^(\[[^\]]+\]|[^:]*):(\d{1,5})$/.exec(value)
  return m && Number(m[2]) <= 65535
    ? Either.right(value)
    : Either.left(invalid("CERTCTL_HTTP01_LISTEN", `must be host:port, got "${value}"`))
}

/**
 * Every setting, the file's values (already decoded) standing in for unset variables. The API key
 * and the enrollment token file's content are not read here: see `load`.
 */
export const settings = (file: AgentFileConfig = {}) =>
  Config.all({
    serverUrl: orFile(text("CERTCTL_SERVER_URL"), file.server_url).pipe(
      Config.mapOrFail((o) => {
        const url = Option.getOrElse(o, () => defaultServerUrl)
        let protocol = ""
        try {
          protocol = new URL(url).protocol
        } catch {
          return Either.left(invalid("CERTCTL_SERVER_URL", `"${url}" is not a URL`))
        }
        return protocol === "http:" || protocol === "https:"
          ? Either.right(url.replace(/\/+$/, ""))
          : Either.left(invalid("CERTCTL_SERVER_URL", `"${url}" is not an http(s) URL`))
      })
    ),
    allowInsecureHttp: orFile(
      Config.mapOrFail(text("CERTCTL_ALLOW_INSECURE_HTTP"), (o) => {
        if (Option.isNone(o)) return Either.right(Option.none<boolean>())
        const v = o.value.trim().toLowerCase()
        if (v === "1" || v === "true") return Either.right(Option.some(true))
        if (v === "0" || v === "false") return Either.right(Option.some(false))
        return Either.left(invalid("CERTCTL_ALLOW_INSECURE_HTTP", `must be 1, true, 0 or false, got "${o.value}"`))
      }),
      file.allow_insecure_http
    ).pipe(Config.map(Option.getOrElse(() => false))),
    apiKey: orFile(text("CERTCTL_API_KEY"), file.api_key),
    agentId: orFile(text("CERTCTL_AGENT_ID"), file.agent_id),
    nodeName: text("NODE_NAME"),
    enrollmentToken: text("CERTCTL_ENROLLMENT_TOKEN"),
    enrollmentTokenFile: text("CERTCTL_ENROLLMENT_TOKEN_FILE"),
    keyDir: orFile(text("CERTCTL_KEY_DIR"), file.key_dir).pipe(Config.map(Option.getOrElse(() => defaultKeyDir))),
    keyPassphrase: orFile(text("CERTCTL_KEY_PASSPHRASE"), file.key_passphrase),
    pollWaitSeconds: orFile(
      number("CERTCTL_POLL_WAIT_SECONDS", { min: 0, max: 60, integer: true }),
      file.poll_wait_seconds
    ).pipe(Config.map(Option.getOrElse(() => 25))),
    workConcurrency: number("CERTCTL_AGENT_WORK_CONCURRENCY", { min: 1, max: 256, integer: true }).pipe(
      Config.map(Option.getOrElse(() => defaultWorkConcurrency))
    ),
    heartbeatSeconds: orFile(
      number("CERTCTL_HEARTBEAT_SECONDS", { min: 1, max: 3600, integer: false }),
      file.heartbeat_seconds
    ).pipe(Config.map(Option.getOrElse(() => 60))),
    driftIntervalSeconds: orFile(
      number("CERTCTL_AGENT_DRIFT_INTERVAL", { min: 0, max: maxDriftInterval, integer: true }),
      file.drift_interval
    ).pipe(Config.map(Option.getOrElse(() => defaultDriftInterval))),
    healthListen: orFile(text("CERTCTL_HEALTH_LISTEN"), file.health_listen).pipe(
      Config.mapOrFail((o) =>
        Option.isSome(o) && o.value !== ""
          ? Either.map(listenSetting("CERTCTL_HEALTH_LISTEN", o.value), Option.some)
          : Either.right(Option.none<string>())
      )
    ),
    http01Listen: text("CERTCTL_HTTP01_LISTEN").pipe(
      Config.mapOrFail((o) => (Option.isSome(o) ? Either.map(http01Listen(o.value), Option.some) : Either.right(o)))
    ),
    http01Webroot: text("CERTCTL_HTTP01_WEBROOT"),
    policyFile: orFile(text("CERTCTL_AGENT_POLICY"), file.policy_file),
    clientCert: orFile(text("CERTCTL_AGENT_CLIENT_CERT"), file.client_cert).pipe(
      Config.mapOrFail((o) => {
        const v = Option.getOrElse(o, () => "off")
          .trim()
          .toLowerCase()
        return v === "auto" || v === "off"
          ? Either.right<"auto" | "off">(v)
          : Either.left(
              invalid("CERTCTL_AGENT_CLIENT_CERT", `must be auto or off, got "${Option.getOrElse(o, () => "")}"`)
            )
      })
    ),
    clientCertRenewBefore: orFile(text("CERTCTL_CLIENT_CERT_RENEW_BEFORE"), file.client_cert_renew_before).pipe(
      Config.mapOrFail((o) => (Option.isSome(o) ? renewBefore(o.value) : Either.right(10 * 86_400)))
    ),
    serverCaFile: orFile(text("CERTCTL_SERVER_CA_FILE"), file.server_ca_file),
    keyRotationSeconds: orFile(text("CERTCTL_KEY_ROTATION"), file.key_rotation).pipe(
      Config.mapOrFail((o) => {
        if (Option.isNone(o)) return Either.right(30 * 86_400)
        const seconds = parseRotation(o.value)
        return seconds === undefined
          ? Either.left(
              invalid(
                "CERTCTL_KEY_ROTATION",
                `must be a duration such as 30d, 12h, 90m or 45s, or off; got "${o.value}"`
              )
            )
          : Either.right(seconds)
      })
    )
  })

/** Whether `hostname` (as `URL` gives it) is this host: 127.0.0.0/8, ::1 or localhost. */
export const isLoopback = (hostname: string): boolean => {
  const h = hostname
    .toLowerCase()
    .replace(/^\[(.*)\]$/, "$1")
    .replace(/\.$/, "")
  return h === "localhost" || h.endsWith(".localhost") || h === "::1" || /^127(\.\d{1,3}){3}$/.test(h)
}

/**
 * Why `url` may not be used without `CERTCTL_ALLOW_INSECURE_HTTP`, or undefined when it may:
 * plain http to another host carries the agent's API key and its deploy work (opened target
 * credentials) in clear, so it must be asked for.
 */
export const insecureServerUrl = (url: string): string | undefined => {
  const parsed = new URL(url)
  if (parsed.protocol !== "http:" || isLoopback(parsed.hostname)) return undefined
  return (
    `"${url}" is plain http to a host that is not this one: the agent's API key and its deploy work would cross ` +
    "the network unencrypted. Use https://, or set CERTCTL_ALLOW_INSECURE_HTTP=1 to accept that"
  )
}

/** The server CA file's PEM: readable, at most 1 MiB, and holding certificates only. */
const readServerCa = (file: string) =>
  Effect.try({
    try: () => {
      if (fs.statSync(file).size > 1_048_576) throw new Error("is larger than 1 MiB")
      const pem = fs.readFileSync(file, "utf8")
      const blocks = pem.match(/-----BEGIN [A-Z0-9 ]{1,40}-----/g) ?? []
      if (blocks.length === 0 || blocks.some((b) => b !== "-----BEGIN CERTIFICATE-----"))
        throw new Error("must hold PEM certificates (BEGIN CERTIFICATE) and nothing else")
      for (const block of pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [])
        new X509Certificate(block)
      return pem
    },
    catch: (e) => invalid("CERTCTL_SERVER_CA_FILE", `${file}: ${(e as Error).message}`)
  })

const readTokenFile = (file: string) =>
  Effect.try({
    try: () => fs.readFileSync(file, "utf8").trim(),
    catch: (e) => invalid("CERTCTL_ENROLLMENT_TOKEN_FILE", `${file}: ${(e as Error).message}`)
  })

/** The JSON file named by `CERTCTL_AGENT_CONFIG`, decoded; unknown keys are refused (typos). */
export const readFile = (file: string): Effect.Effect<AgentFileConfig, ConfigError.ConfigError> =>
  Effect.try({
    try: (): unknown => JSON.parse(fs.readFileSync(file, "utf8")),
    catch: (e) => invalid("CERTCTL_AGENT_CONFIG", `${file}: ${(e as Error).message}`)
  }).pipe(
    Effect.flatMap((raw) =>
      Schema.decodeUnknown(AgentFileConfig, { onExcessProperty: "error", errors: "all" })(raw).pipe(
        Effect.mapError((e) => invalid("CERTCTL_AGENT_CONFIG", `${file} is invalid: ${e.message}`))
      )
    )
  )

/**
 * Reads the agent's settings from the current `ConfigProvider` (the environment by default; a
 * test gives `ConfigProvider.fromMap`) and the file it names.
 */
export const load: Effect.Effect<AgentSettings, ConfigError.ConfigError> = Effect.gen(function* () {
  const path = yield* text("CERTCTL_AGENT_CONFIG")
  const file = Option.isSome(path) ? yield* readFile(path.value) : {}
  const c = yield* settings(file)
  const insecure = c.allowInsecureHttp ? undefined : insecureServerUrl(c.serverUrl)
  if (insecure) return yield* Effect.fail(invalid("CERTCTL_SERVER_URL", insecure))
  const enrollmentToken = Option.isSome(c.enrollmentToken)
    ? c.enrollmentToken.value.trim()
    : Option.isSome(c.enrollmentTokenFile)
      ? yield* readTokenFile(c.enrollmentTokenFile.value)
      : ""
  // A given key belongs to one registered id; only an enrolling agent may derive its id.
  if (Option.isSome(c.apiKey) && Option.isNone(c.agentId))
    return yield* Effect.fail(
      invalid("CERTCTL_AGENT_ID", "is required with CERTCTL_API_KEY (the id the agent was registered with)")
    )
  const agentId = Option.getOrElse(c.agentId, () => defaultAgentId(Option.getOrUndefined(c.nodeName)))
  if (!agentIdPattern.test(agentId))
    return yield* Effect.fail(
      invalid(
        "CERTCTL_AGENT_ID",
        `agent id "${agentId}" must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`
      )
    )
  if (c.clientCert === "auto" && !c.serverUrl.startsWith("https://"))
    return yield* Effect.fail(
      invalid(
        "CERTCTL_AGENT_CLIENT_CERT",
        `auto needs an https:// CERTCTL_SERVER_URL (a client certificate is presented in the TLS handshake), got "${c.serverUrl}"`
      )
    )
  const serverCa = Option.isSome(c.serverCaFile) ? yield* readServerCa(c.serverCaFile.value) : undefined
  const policy = Option.isSome(c.policyFile) ? yield* Policy.readFile(c.policyFile.value) : undefined
  const http01 = Option.isSome(c.http01Listen)
    ? { listen: c.http01Listen.value }
    : Option.isSome(c.http01Webroot)
      ? { webroot: c.http01Webroot.value }
      : file.http01
  return {
    serverUrl: c.serverUrl,
    apiKey: Option.getOrUndefined(Option.map(c.apiKey, Redacted.make)),
    enrollmentToken: enrollmentToken ? Redacted.make(enrollmentToken) : undefined,
    agentId,
    agentIdExplicit: Option.isSome(c.agentId),
    keyDir: c.keyDir,
    keyPassphrase: Option.getOrUndefined(Option.map(c.keyPassphrase, Redacted.make)),
    pollWaitSeconds: c.pollWaitSeconds,
    heartbeatSeconds: c.heartbeatSeconds,
    workConcurrency: c.workConcurrency,
    driftIntervalSeconds: c.driftIntervalSeconds,
    http01,
    healthListen: Option.getOrUndefined(c.healthListen),
    targets: file.targets ?? {},
    ...(policy ? { policy } : {}),
    keyRotationSeconds: c.keyRotationSeconds,
    clientCert: c.clientCert,
    clientCertRenewBeforeSeconds: c.clientCertRenewBefore,
    ...(serverCa ? { serverCa } : {})
  }
})
