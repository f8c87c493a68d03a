import * as fs from "node:fs"
import * as path from "node:path"
import { AgentClient, type CertctlError, Errors, NodeTransport, Tls } from "@certctl/sdk"
import { Data, Effect, Option, Redacted, Schedule } from "effect"
import type { AgentConfig, AgentSettings } from "./Config.js"

/**
 * Where the agent's identity comes from, in order: `CERTCTL_API_KEY`; the key it stored when it
 * enrolled (`<key_dir>/.agent/api-key`, 0600, its agent id beside it); or a one-time exchange of an
 * enrollment token (`CERTCTL_ENROLLMENT_TOKEN[_FILE]`) for its own key, which it stores before
 * using. A restarted agent (a rescheduled pod with the same volume) finds the stored key and does
 * not enroll again: its id exists now, and a second exchange would be refused.
 */

export class EnrollmentError extends Data.TaggedError("EnrollmentError")<{ readonly message: string }> {}

export const stateDir = (keyDir: string) => path.join(keyDir, ".agent")
const keyFile = (keyDir: string) => path.join(stateDir(keyDir), "api-key")
const idFile = (keyDir: string) => path.join(stateDir(keyDir), "agent-id")

export interface Identity {
  readonly agentId: string
  readonly apiKey: Redacted.Redacted<string>
}

/**
 * Writes `file` whole or not at all: a temp file at `mode` beside it (never in /tmp: the agent
 * writes only in its key directory), fsync, rename, then fsync the directory. `beforeRename` runs
 * with the temp file complete and the old file still in place (a crash-test hook).
 */
const writeAtomic = (file: string, content: string, mode: number, beforeRename?: () => void) => {
  const dir = path.dirname(file)
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`)
  const fd = fs.openSync(tmp, "w", mode)
  try {
    fs.writeFileSync(fd, content)
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
  fs.chmodSync(tmp, mode)
  beforeRename?.()
  fs.renameSync(tmp, file)
  const dfd = fs.openSync(dir, "r")
  try {
    fs.fsyncSync(dfd)
  } finally {
    fs.closeSync(dfd)
  }
}

/** The identity stored by an earlier enrollment, if any. */
export const readStored = (keyDir: string): Effect.Effect<Option.Option<Identity>, EnrollmentError> =>
  Effect.try({
    try: () => {
      if (!fs.existsSync(keyFile(keyDir))) return Option.none<Identity>()
      const apiKey = fs.readFileSync(keyFile(keyDir), "utf8").trim()
      const agentId = fs.existsSync(idFile(keyDir)) ? fs.readFileSync(idFile(keyDir), "utf8").trim() : ""
      if (!apiKey || !agentId) throw new Error("the stored key or its agent id is empty")
      return Option.some<Identity>({ agentId, apiKey: Redacted.make(apiKey) })
    },
    catch: (e) =>
      new EnrollmentError({ message: `stored agent identity in ${stateDir(keyDir)}: ${(e as Error).message}` })
  })

/** Stores an identity: directory 0700, key 0600, the id first so a stored key always has its id. */
export const store = (keyDir: string, identity: Identity): Effect.Effect<void, EnrollmentError> =>
  Effect.try({
    try: () => {
      fs.mkdirSync(stateDir(keyDir), { recursive: true, mode: 0o700 })
      fs.chmodSync(stateDir(keyDir), 0o700)
      writeAtomic(idFile(keyDir), `${identity.agentId}\n`, 0o600)
      writeAtomic(keyFile(keyDir), `${Redacted.value(identity.apiKey)}\n`, 0o600)
    },
    catch: (e) =>
      new EnrollmentError({ message: `cannot store the agent's key in ${stateDir(keyDir)}: ${(e as Error).message}` })
  })

/**
 * Replaces the stored key of an enrolled agent (a rotation): atomically, 0600. Its id is already
 * stored beside it. Until the rename the old key is the stored one; after it, the new one.
 */
export const storeKey = (
  keyDir: string,
  apiKey: Redacted.Redacted<string>,
  beforeRename?: () => void
): Effect.Effect<void, EnrollmentError> =>
  Effect.try({
    try: () => writeAtomic(keyFile(keyDir), `${Redacted.value(apiKey)}\n`, 0o600, beforeRename),
    catch: (e) =>
      new EnrollmentError({ message: `cannot store the rotated key in ${stateDir(keyDir)}: ${(e as Error).message}` })
  })

/** When the stored key was written (enrolled or last rotated); none when no key is stored. */
export const storedAt = (keyDir: string): Option.Option<number> => {
  try {
    return Option.some(fs.statSync(keyFile(keyDir)).mtimeMs)
  } catch {
    return Option.none()
  }
}

/** A refusal is final; an unreachable or overloaded control plane is retried for a while. */
const retryable = (e: CertctlError) => e.status === 0 || e.status === 429 || e.status >= 500

/** Exchanges the enrollment token for this agent's own identity (`POST /api/v1/agents/enroll`). */
export const exchange = (options: {
  readonly serverUrl: string
  readonly token: Redacted.Redacted<string>
  readonly agentId: string
  readonly name?: string
  /** The CA trusted for the control plane (`CERTCTL_SERVER_CA_FILE`); absent: Node's roots. */
  readonly ca?: string
}): Effect.Effect<Identity, EnrollmentError> =>
  Effect.gen(function* () {
    const client = yield* AgentClient.make({ url: options.serverUrl, apiKey: options.token })
    return yield* client.enrollment
      .exchange({ payload: { id: options.agentId, ...(options.name ? { name: options.name } : {}) } })
      .pipe(Errors.normalize(options.serverUrl))
  }).pipe(
    Effect.tapError((e) =>
      retryable(e) ? Effect.logWarning(`enrollment: ${Errors.format(e)}; retrying`) : Effect.void
    ),
    Effect.retry({
      while: retryable,
      schedule: Schedule.exponential("1 second").pipe(
        Schedule.jittered,
        Schedule.union(Schedule.spaced("30 seconds")),
        Schedule.upTo("10 minutes")
      )
    }),
    Effect.map((r) => ({ agentId: r.agent.id, apiKey: Redacted.make(r.api_key) })),
    Effect.mapError(
      (e) =>
        new EnrollmentError({
          message: `enrollment of agent ${options.agentId} at ${options.serverUrl} refused: ${Errors.format(e)}`
        })
    ),
    Effect.provide(options.ca ? Tls.layer({ ca: options.ca }) : NodeTransport.layer())
  )

/** The agent's configuration with its identity settled: given, stored, or enrolled now (and stored). */
export const resolve = (settings: AgentSettings): Effect.Effect<AgentConfig, EnrollmentError> =>
  Effect.gen(function* () {
    const { apiKey, enrollmentToken, agentIdExplicit, ...rest } = settings
    if (apiKey) return { ...rest, apiKey }
    const stored = yield* readStored(settings.keyDir)
    if (Option.isSome(stored)) {
      if (agentIdExplicit && stored.value.agentId !== settings.agentId)
        return yield* new EnrollmentError({
          message: `the key stored in ${stateDir(settings.keyDir)} belongs to agent ${stored.value.agentId}, not CERTCTL_AGENT_ID ${settings.agentId}`
        })
      yield* Effect.logInfo(
        `using the API key stored in ${stateDir(settings.keyDir)} for agent ${stored.value.agentId}`
      )
      return { ...rest, agentId: stored.value.agentId, apiKey: stored.value.apiKey, keyStored: true }
    }
    if (!enrollmentToken)
      return yield* new EnrollmentError({
        message: `no agent identity: set CERTCTL_API_KEY (from "certctl agents register"), or CERTCTL_ENROLLMENT_TOKEN / CERTCTL_ENROLLMENT_TOKEN_FILE (from "certctl enroll-tokens create"); no stored key in ${stateDir(settings.keyDir)}`
      })
    yield* Effect.logInfo(`enrolling as agent ${settings.agentId} at ${settings.serverUrl}`)
    const identity = yield* exchange({
      serverUrl: settings.serverUrl,
      token: enrollmentToken,
      agentId: settings.agentId,
      ...(settings.serverCa ? { ca: settings.serverCa } : {})
    })
    // Stored before first use: a crash from here on restarts with this key, never re-enrolls.
    yield* store(settings.keyDir, identity)
    yield* Effect.logInfo(`enrolled as agent ${identity.agentId}; key stored in ${stateDir(settings.keyDir)}`)
    return { ...rest, agentId: identity.agentId, apiKey: identity.apiKey, keyStored: true }
  })
