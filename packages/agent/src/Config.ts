import * as fs from "node:fs"
import * as os from "node:os"
import { Data, Redacted, Schema } from "effect"
import { parseListen } from "./Health.js"

/**
 * Agent settings: a JSON file (`CERTCTL_AGENT_CONFIG`) and the environment, the environment
 * winning. Target connection settings may be given here per target id; they override what the
 * control plane sends, so credentials can stay on the agent's host only.
 */
export const AgentFileConfig = Schema.Struct({
  server_url: Schema.optional(Schema.String),
  api_key: Schema.optional(Schema.String),
  agent_id: Schema.optional(Schema.String),
  key_dir: Schema.optional(Schema.String),
  key_passphrase: Schema.optional(Schema.String),
  poll_wait_seconds: Schema.optional(Schema.Int.pipe(Schema.between(0, 60))),
  heartbeat_seconds: Schema.optional(Schema.Number.pipe(Schema.between(1, 3600))),
  /** Serve GET /healthz on this address, e.g. "127.0.0.1:9090" (see Health.ts). */
  health_listen: Schema.optional(Schema.String.pipe(Schema.maxLength(300))),
  http01: Schema.optional(
    Schema.Struct({
      /** Serve challenges on this address, e.g. "0.0.0.0:80". */
      listen: Schema.optional(Schema.String),
      /** Or write them into this webroot (…/.well-known/acme-challenge/<token>). */
      webroot: Schema.optional(Schema.String)
    })
  ),
  targets: Schema.optional(
    Schema.Record({ key: Schema.String, value: Schema.Record({ key: Schema.String, value: Schema.Unknown }) })
  )
})
export type AgentFileConfig = typeof AgentFileConfig.Type

export interface AgentConfig {
  readonly serverUrl: string
  readonly apiKey: Redacted.Redacted<string>
  readonly agentId: string
  readonly keyDir: string
  readonly keyPassphrase?: Redacted.Redacted<string>
  readonly pollWaitSeconds: number
  readonly heartbeatSeconds: number
  readonly healthListen?: string
  readonly http01?: { readonly listen?: string; readonly webroot?: string }
  readonly targets: Readonly<Record<string, Record<string, unknown>>>
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

export class AgentConfigError extends Data.TaggedError("AgentConfigError")<{ readonly message: string }> {}

/**
 * The default agent id of an enrolling agent: the Kubernetes node name (`NODE_NAME`, from the
 * downward API) or the host name, lowercased and cut to the agent-id alphabet.
 */
export const defaultAgentId = (env: NodeJS.ProcessEnv = process.env): string =>
  (env.NODE_NAME || os.hostname())
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, "-")
    .replace(/^[^a-z0-9]+/, "")
    .slice(0, 64)

const agentIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

const readEnrollmentToken = (env: NodeJS.ProcessEnv): string | undefined => {
  if (env.CERTCTL_ENROLLMENT_TOKEN) return env.CERTCTL_ENROLLMENT_TOKEN.trim()
  const file = env.CERTCTL_ENROLLMENT_TOKEN_FILE
  if (!file) return undefined
  try {
    return fs.readFileSync(file, "utf8").trim() || undefined
  } catch (e) {
    throw new AgentConfigError({ message: `CERTCTL_ENROLLMENT_TOKEN_FILE ${file}: ${(e as Error).message}` })
  }
}

export const load = (env: NodeJS.ProcessEnv = process.env): AgentSettings => {
  let file: AgentFileConfig = {}
  const path = env.CERTCTL_AGENT_CONFIG
  if (path) {
    let raw: unknown
    try {
      raw = JSON.parse(fs.readFileSync(path, "utf8"))
    } catch (e) {
      throw new AgentConfigError({ message: `CERTCTL_AGENT_CONFIG ${path}: ${(e as Error).message}` })
    }
    const decoded = Schema.decodeUnknownEither(AgentFileConfig, { onExcessProperty: "error" })(raw)
    if (decoded._tag === "Left")
      throw new AgentConfigError({ message: `CERTCTL_AGENT_CONFIG ${path} is invalid: ${decoded.left.message}` })
    file = decoded.right
  }
  const serverUrl = env.CERTCTL_SERVER_URL ?? file.server_url ?? "http://127.0.0.1:8443"
  try {
    new URL(serverUrl)
  } catch {
    throw new AgentConfigError({ message: `CERTCTL_SERVER_URL "${serverUrl}" is not a URL` })
  }
  const apiKey = env.CERTCTL_API_KEY || file.api_key
  const enrollmentToken = readEnrollmentToken(env)
  // An empty variable (as compose passes an unset one) counts as unset.
  const explicitId = env.CERTCTL_AGENT_ID || file.agent_id || undefined
  // A given key belongs to one registered id; only an enrolling agent may derive its id.
  if (apiKey && !explicitId)
    throw new AgentConfigError({ message: "CERTCTL_AGENT_ID is required (the id the agent was registered with)" })
  const agentId = explicitId ?? defaultAgentId(env)
  if (!agentIdPattern.test(agentId))
    throw new AgentConfigError({
      message: `agent id "${agentId}" must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (set CERTCTL_AGENT_ID)`
    })
  const passphrase = env.CERTCTL_KEY_PASSPHRASE ?? file.key_passphrase
  const healthListen = env.CERTCTL_HEALTH_LISTEN ?? file.health_listen
  if (healthListen && !parseListen(healthListen))
    throw new AgentConfigError({ message: `CERTCTL_HEALTH_LISTEN "${healthListen}" is not host:port` })
  return {
    serverUrl: serverUrl.replace(/\/$/, ""),
    apiKey: apiKey ? Redacted.make(apiKey) : undefined,
    enrollmentToken: enrollmentToken ? Redacted.make(enrollmentToken) : undefined,
    agentId,
    agentIdExplicit: explicitId !== undefined,
    keyDir: env.CERTCTL_KEY_DIR ?? file.key_dir ?? "./.certctl/keys",
    keyPassphrase: passphrase ? Redacted.make(passphrase) : undefined,
    pollWaitSeconds: Number(env.CERTCTL_POLL_WAIT_SECONDS ?? file.poll_wait_seconds ?? 25),
    heartbeatSeconds: Number(env.CERTCTL_HEARTBEAT_SECONDS ?? file.heartbeat_seconds ?? 60),
    http01: env.CERTCTL_HTTP01_LISTEN
      ? { listen: env.CERTCTL_HTTP01_LISTEN }
      : env.CERTCTL_HTTP01_WEBROOT
        ? { webroot: env.CERTCTL_HTTP01_WEBROOT }
        : file.http01,
    healthListen: healthListen || undefined,
    targets: file.targets ?? {}
  }
}
