import { Egress, Settings } from "@certctl/core"
import { Config, ConfigError, Context, type Duration, Either, Layer, type Option, Redacted } from "effect"
import * as Overload from "./http/Overload.js"

/** Every server setting, from `CERTCTL_*` environment variables (listed in the README). */
export interface ServerSettings {
  readonly listenHost: string
  readonly listenPort: number
  readonly tlsCertFile: Option.Option<string>
  readonly tlsKeyFile: Option.Option<string>
  /** Agents' TLS client certificates: not asked for, checked when presented, or required. */
  readonly agentMtls: "off" | "optional" | "required"
  readonly adminApiKey: Option.Option<Redacted.Redacted<string>>
  readonly publicUrl: Option.Option<string>
  readonly csrTimeout: Duration.Duration
  readonly csrWait: Duration.Duration
  /** How long an ACME order started before the agent's CSR waits for it (0: no early order). */
  readonly earlyOrderWait: Duration.Duration
  readonly deployTimeout: Duration.Duration
  readonly renewalScanInterval: Duration.Duration
  readonly jobConcurrency: number
  readonly jobLease: Duration.Duration
  readonly retryBase: Duration.Duration
  readonly maxAttempts: number
  readonly shutdownGrace: Duration.Duration
  readonly dataDir: string
  /** Whether `/metrics` answers without a key (off by default: it tells who runs what). */
  readonly metricsPublic: boolean
  /** Where issuers and notifiers may connect (`CERTCTL_EGRESS_ALLOW`). */
  readonly egress: Egress.Policy
  /** Load shedding (429/503 with Retry-After); `Overload.defaults` when absent. */
  readonly overload?: Overload.Settings
}

export class ServerConfig extends Context.Tag("@certctl/server/Config")<ServerConfig, ServerSettings>() {}

const listenAddr = Config.string("CERTCTL_LISTEN_ADDR").pipe(
  Config.withDefault("127.0.0.1:8443"),
  Config.mapOrFail((s) => {
    const m = /^(\[[^\]]+\]|[^:]*):(\d{1,5})$/.exec(s)
    const port = m ? Number(m[2]) : Number.NaN
    return m && port >= 0 && port <= 65535
      ? Either.right({ host: m[1].replace(/^\[|\]$/g, "") || "0.0.0.0", port })
      : Either.left(ConfigError.InvalidData(["CERTCTL_LISTEN_ADDR"], `must be host:port, got "${s}"`))
  })
)

/** Bearer keys are compared whole; a short one could be guessed, a very long one is never accepted (512). */
export const minAdminKeyLength = 32
const adminApiKey = Config.redacted("CERTCTL_ADMIN_API_KEY").pipe(
  Config.mapOrFail((key) => {
    const n = Redacted.value(key).length
    return n >= minAdminKeyLength && n <= 512
      ? Either.right(key)
      : Either.left(
          ConfigError.InvalidData(
            ["CERTCTL_ADMIN_API_KEY"],
            `must be ${minAdminKeyLength} to 512 characters, got ${n} (generate one with: openssl rand -base64 32)`
          )
        )
  })
)

const { atLeast, duration } = Settings

const overloadSettings = Config.all({
  maxConcurrent: atLeast("CERTCTL_MAX_CONCURRENT_REQUESTS", 1, Overload.defaults.maxConcurrent),
  maxQueued: atLeast("CERTCTL_MAX_QUEUED_REQUESTS", 0, Overload.defaults.maxQueued),
  queueTimeout: duration("CERTCTL_QUEUE_TIMEOUT", Overload.defaults.queueTimeout),
  rateLimit: atLeast("CERTCTL_RATE_LIMIT", 0, Overload.defaults.rateLimit, Config.number("CERTCTL_RATE_LIMIT")),
  rateBurst: atLeast("CERTCTL_RATE_LIMIT_BURST", 1, Overload.defaults.rateBurst),
  longPollsPerAgent: atLeast("CERTCTL_LONG_POLLS_PER_AGENT", 1, Overload.defaults.longPollsPerAgent),
  retryAfter: duration("CERTCTL_RETRY_AFTER", Overload.defaults.retryAfter)
})

export const settings = Config.all({
  listen: listenAddr,
  tlsCertFile: Config.option(Config.string("CERTCTL_TLS_CERT_FILE")),
  tlsKeyFile: Config.option(Config.string("CERTCTL_TLS_KEY_FILE")),
  agentMtls: Config.literal("off", "optional", "required")("CERTCTL_AGENT_MTLS").pipe(Config.withDefault("off")),
  adminApiKey: Config.option(adminApiKey),
  publicUrl: Config.option(Config.string("CERTCTL_PUBLIC_URL")),
  csrTimeout: duration("CERTCTL_CSR_TIMEOUT", "5 minutes"),
  csrWait: duration("CERTCTL_CSR_WAIT", "10 seconds"),
  earlyOrderWait: duration("CERTCTL_EARLY_ORDER_WAIT", "10 seconds"),
  deployTimeout: duration("CERTCTL_DEPLOY_TIMEOUT", "10 minutes"),
  renewalScanInterval: duration("CERTCTL_RENEWAL_SCAN_INTERVAL", "1 hour"),
  jobConcurrency: atLeast("CERTCTL_JOB_CONCURRENCY", 0, 16),
  jobLease: duration("CERTCTL_JOB_LEASE", "30 seconds"),
  retryBase: duration("CERTCTL_RETRY_BASE", "5 seconds"),
  maxAttempts: atLeast("CERTCTL_MAX_ATTEMPTS", 1, 5),
  shutdownGrace: duration("CERTCTL_SHUTDOWN_GRACE", "10 seconds"),
  dataDir: Config.string("CERTCTL_DATA_DIR").pipe(Config.withDefault("./.certctl/data")),
  metricsPublic: Config.boolean("CERTCTL_METRICS_PUBLIC").pipe(Config.withDefault(false)),
  egress: Egress.config,
  overload: overloadSettings
}).pipe(
  Config.mapOrFail((c) =>
    c.agentMtls !== "off" && (c.tlsCertFile._tag === "None" || c.tlsKeyFile._tag === "None")
      ? Either.left(
          ConfigError.InvalidData(
            ["CERTCTL_AGENT_MTLS"],
            `is "${c.agentMtls}", which needs TLS: set CERTCTL_TLS_CERT_FILE and CERTCTL_TLS_KEY_FILE too`
          )
        )
      : Either.right(c)
  ),
  Config.map(
    (c): ServerSettings => ({
      listenHost: c.listen.host,
      listenPort: c.listen.port,
      tlsCertFile: c.tlsCertFile,
      tlsKeyFile: c.tlsKeyFile,
      agentMtls: c.agentMtls,
      adminApiKey: c.adminApiKey,
      publicUrl: c.publicUrl,
      csrTimeout: c.csrTimeout,
      csrWait: c.csrWait,
      earlyOrderWait: c.earlyOrderWait,
      deployTimeout: c.deployTimeout,
      renewalScanInterval: c.renewalScanInterval,
      jobConcurrency: c.jobConcurrency,
      jobLease: c.jobLease,
      retryBase: c.retryBase,
      maxAttempts: c.maxAttempts,
      shutdownGrace: c.shutdownGrace,
      dataDir: c.dataDir,
      metricsPublic: c.metricsPublic,
      egress: c.egress,
      overload: c.overload
    })
  )
)

export const layer = Layer.effect(ServerConfig, settings)
export const layerWith = (s: ServerSettings) => Layer.succeed(ServerConfig, s)
