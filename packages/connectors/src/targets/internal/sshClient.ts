/**
 * One authenticated SSH connection (ssh2) as a scoped Effect resource: public-key auth, host key
 * checked against a pinned OpenSSH-style SHA256 fingerprint, and `exec` with captured output.
 */
import { createHash } from "node:crypto"
import { createRequire } from "node:module"
import { ConnectorError } from "@certctl/core"
import { Duration, Effect, Redacted, type Scope } from "effect"
import type ssh2 from "ssh2"

// ssh2 (with its optional native parts) is loaded on first use, not at import: a process that
// never meets an nginx target (most agents, bundled into one file with ssh2 left outside) does
// not pay its memory. `require` keeps the use synchronous (privateKeyProblem runs in a schema
// filter); ssh2 is CommonJS, so this is the same module object a static import would give.
const require = createRequire(import.meta.url)
let loaded: typeof ssh2 | undefined
const ssh = (): typeof ssh2 => {
  loaded ??= require("ssh2") as typeof ssh2
  return loaded
}

export interface SshConnectOptions {
  readonly host: string
  readonly port: number
  readonly username: string
  readonly privateKey: Redacted.Redacted<string>
  readonly passphrase?: Redacted.Redacted<string>
  /** "SHA256:…" the server must present; undefined when nothing is pinned (yet). */
  readonly expectedHostKey?: string
  /** With nothing pinned: accept whatever key is presented (trust on first use). */
  readonly acceptUnknownHostKey: boolean
  /** Where a pinned key came from, for the mismatch message ("host_key_sha256", "first use"). */
  readonly pinnedBy?: string
  readonly timeoutMs: number
}

export interface ExecResult {
  /** Exit status; null when the command died from a signal or the server sent none. */
  readonly code: number | null
  readonly signal?: string
  readonly stdout: string
  readonly stderr: string
}

export interface SshSession {
  readonly client: ssh2.Client
  /** Fingerprint of the host key the server presented ("SHA256:…", unpadded base64). */
  readonly hostKeySha256: string
  readonly exec: (command: string, timeoutMs: number) => Effect.Effect<ExecResult, ConnectorError>
}

/** OpenSSH's fingerprint format: "SHA256:" + unpadded base64 of the SHA-256 of the key blob. */
export const fingerprintSha256 = (keyBlob: Buffer): string =>
  "SHA256:" + createHash("sha256").update(keyBlob).digest("base64").replace(/=+$/, "")

/** Accepts "SHA256:abc…", with or without base64 padding; undefined when malformed. */
export const normalizeFingerprint = (input: string): string | undefined => {
  const m = /^SHA256:([A-Za-z0-9+/]{43})=?$/.exec(input.trim())
  return m ? `SHA256:${m[1]}` : undefined
}

/** Returns an error message when `key` is not a usable private key, else undefined. */
export const privateKeyProblem = (key: string, passphrase?: string): string | undefined => {
  const parsed = ssh().utils.parseKey(key, passphrase)
  if (parsed instanceof Error) {
    const encrypted = /encrypted/i.test(parsed.message)
    return encrypted && passphrase === undefined
      ? "ssh_key is encrypted: set ssh_key_passphrase"
      : `ssh_key cannot be parsed as a private key (${parsed.message}); expected OpenSSH, PEM or PPK private key text`
  }
  const first = Array.isArray(parsed) ? parsed[0] : parsed
  if (!first?.isPrivateKey() || first.getPrivatePEM() === null)
    return "ssh_key is a public key; a private key is required"
  return undefined
}

const MAX_OUTPUT = 64 * 1024

const err = (reason: ConnectorError["reason"], message: string, cause?: unknown) =>
  new ConnectorError({ reason, message, cause })

/** Connect and authenticate; the connection is closed when the scope closes. */
export const connectSsh = (options: SshConnectOptions): Effect.Effect<SshSession, ConnectorError, Scope.Scope> => {
  const where = `${options.host}:${options.port}`
  return Effect.acquireRelease(
    Effect.async<SshSession, ConnectorError>((resume) => {
      const client = new (ssh().Client)()
      let seen: string | undefined
      let hostKeyRefusal: string | undefined
      let settled = false
      const settle = (effect: Effect.Effect<SshSession, ConnectorError>) => {
        if (settled) return
        settled = true
        resume(effect)
      }
      client.once("ready", () => {
        settle(Effect.succeed({ client, hostKeySha256: seen ?? "", exec: (cmd, ms) => exec(client, where, cmd, ms) }))
      })
      client.on("error", (e: Error & { level?: string }) => {
        client.end()
        if (hostKeyRefusal) return settle(Effect.fail(err("Unauthorized", hostKeyRefusal)))
        settle(Effect.fail(mapConnectError(e, where, options.username)))
      })
      client.once("close", () =>
        settle(Effect.fail(err("Transient", `SSH connection to ${where} closed during setup`)))
      )
      try {
        client.connect({
          host: options.host,
          port: options.port,
          username: options.username,
          privateKey: Redacted.value(options.privateKey),
          passphrase: options.passphrase ? Redacted.value(options.passphrase) : undefined,
          readyTimeout: options.timeoutMs,
          // Notice a dead peer (then pending SFTP calls and commands fail instead of waiting).
          keepaliveInterval: 5_000,
          keepaliveCountMax: 3,
          // Only our key: never fall back to password, keyboard-interactive or an agent.
          authHandler: ["publickey"],
          hostVerifier: (key: Buffer) => {
            seen = fingerprintSha256(key)
            hostKeyRefusal = hostKeyVerdict(options, where, seen)
            return hostKeyRefusal === undefined
          }
        })
      } catch (e) {
        settle(Effect.fail(err("InvalidConfig", `cannot start SSH connection to ${where}: ${(e as Error).message}`, e)))
      }
      return Effect.sync(() => client.end())
    }).pipe(
      Effect.timeoutFail({
        duration: Duration.millis(options.timeoutMs + 2000),
        onTimeout: () => err("Timeout", `SSH connection to ${where} timed out after ${options.timeoutMs} ms`)
      })
    ),
    (session) => Effect.sync(() => session.client.end())
  )
}

/** undefined to accept; otherwise the refusal message (shows what was seen and how to pin it). */
const hostKeyVerdict = (options: SshConnectOptions, where: string, seen: string): string | undefined => {
  if (options.expectedHostKey !== undefined) {
    if (options.expectedHostKey === seen) return undefined
    return (
      `SSH host key mismatch for ${where}: the server presented ${seen} but ${options.pinnedBy ?? "host_key_sha256"} ` +
      `pins ${options.expectedHostKey}. If the host was re-keyed, verify the new key out of band and update ` +
      `host_key_sha256; otherwise this may be a man-in-the-middle`
    )
  }
  if (options.acceptUnknownHostKey) return undefined
  return (
    `unknown SSH host key for ${where}: the server presented ${seen}. Verify it out of band ` +
    `(on the host: ssh-keygen -l -E sha256 -f /etc/ssh/ssh_host_ed25519_key.pub), then pin it with ` +
    `host_key_sha256: "${seen}" (or set trust_on_first_use: true)`
  )
}

const mapConnectError = (e: Error & { level?: string; code?: string }, where: string, user: string) => {
  switch (e.level) {
    case "client-authentication":
      return err("Unauthorized", `SSH authentication as "${user}" on ${where} failed: the server refused ssh_key`, e)
    case "client-timeout":
      return err("Timeout", `SSH handshake with ${where} timed out`, e)
    case "client-dns":
      return err("Transient", `cannot resolve SSH host ${where}: ${e.message}`, e)
    case "client-socket":
      return err("Transient", `cannot reach SSH server ${where}: ${e.message}`, e)
    default:
      return err("Transient", `SSH connection to ${where} failed: ${e.message}`, e)
  }
}

const exec = (
  client: ssh2.Client,
  where: string,
  command: string,
  timeoutMs: number
): Effect.Effect<ExecResult, ConnectorError> =>
  Effect.async<ExecResult, ConnectorError>((resume) => {
    let channel: ssh2.ClientChannel | undefined
    client.exec(command, (e, stream) => {
      if (e) return resume(Effect.fail(err("Transient", `cannot run a command on ${where}: ${e.message}`, e)))
      channel = stream
      let stdout = ""
      let stderr = ""
      let code: number | null = null
      let signal: string | undefined
      const cap = (s: string, d: Buffer) => (s.length < MAX_OUTPUT ? (s + d.toString("utf8")).slice(0, MAX_OUTPUT) : s)
      stream.on("data", (d: Buffer) => {
        stdout = cap(stdout, d)
      })
      stream.stderr.on("data", (d: Buffer) => {
        stderr = cap(stderr, d)
      })
      stream.on("exit", (c: number | null, s?: string) => {
        code = typeof c === "number" ? c : null
        signal = s ?? undefined
      })
      stream.on("close", () => resume(Effect.succeed({ code, signal, stdout, stderr })))
    })
    return Effect.sync(() => channel?.close())
  }).pipe(
    Effect.timeoutFail({
      duration: Duration.millis(timeoutMs),
      onTimeout: () => err("Timeout", `command on ${where} did not finish within ${timeoutMs} ms: ${command}`)
    })
  )

/** Both output streams, trimmed, for error messages (nginx -t reports on stderr). */
export const describeOutput = (r: ExecResult): string => {
  const text = [r.stderr.trim(), r.stdout.trim()].filter((s) => s.length > 0).join("\n")
  return text.length > 0 ? text : "(no output)"
}
