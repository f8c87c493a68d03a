import * as fs from "node:fs/promises"
import * as http from "node:http"
import * as path from "node:path"
import type { Work } from "@certctl/core"
import { Effect, Option } from "effect"

/**
 * Answers ACME http-01 challenges where the name points: either an HTTP responder the agent runs,
 * or files in a webroot that an existing web server already serves.
 */
export interface Http01 {
  readonly present: (token: string, keyAuthorization: string) => Effect.Effect<void, Error>
  readonly cleanup: (token: string) => Effect.Effect<void, Error>
}

const validToken = (t: string) => /^[A-Za-z0-9_-]{1,256}$/.test(t)

export const webroot = (root: string): Http01 => {
  const dir = path.join(root, ".well-known", "acme-challenge")
  return {
    present: (token, ka) =>
      Effect.tryPromise({
        try: async () => {
          if (!validToken(token)) throw new Error(`refusing challenge token "${token}"`)
          await fs.mkdir(root, { recursive: true, mode: 0o755 })
          // A link under the webroot would send the token (and the write) elsewhere: each level is
          // checked before it is used, and created only when missing.
          for (const p of [path.join(root, ".well-known"), dir]) {
            const st = await fs.lstat(p).catch((e) => (e.code === "ENOENT" ? undefined : Promise.reject(e)))
            if (st?.isSymbolicLink())
              throw new Error(`${p} is a symbolic link; the http-01 webroot writes only into real directories`)
            if (!st)
              await fs.mkdir(p, { mode: 0o755 }).catch((e) => (e.code === "EEXIST" ? undefined : Promise.reject(e)))
          }
          const file = path.join(dir, token)
          await fs.rm(file, { force: true }) // removes a link itself, never its target
          const handle = await fs.open(
            file,
            fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW,
            0o644
          )
          try {
            await handle.writeFile(ka)
          } finally {
            await handle.close()
          }
        },
        catch: (e) => e as Error
      }),
    cleanup: (token) =>
      Effect.tryPromise({
        try: () => (validToken(token) ? fs.rm(path.join(dir, token), { force: true }) : Promise.resolve()),
        catch: (e) => e as Error
      })
  }
}

/** A responder on `host:port`; it lives as long as the agent. */
export const responder = (listen: string) =>
  Effect.acquireRelease(
    Effect.async<{ http01: Http01; server: http.Server }, Error>((resume) => {
      const tokens = new Map<string, string>()
      const server = http.createServer((req, res) => {
        const m = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(req.url ?? "")
        const ka = m ? tokens.get(m[1]) : undefined
        if (ka === undefined) {
          res.writeHead(404).end()
          return
        }
        res.writeHead(200, { "content-type": "application/octet-stream" }).end(ka)
      })
      const idx = listen.lastIndexOf(":")
      server.once("error", (e) => resume(Effect.fail(e)))
      // "[::]:80" → host "::" (brackets are URL syntax, not part of the address).
      const host = listen.slice(0, idx).replace(/^\[(.*)\]$/, "$1") || "0.0.0.0"
      server.listen(Number(listen.slice(idx + 1)), host, () =>
        resume(
          Effect.succeed({
            server,
            http01: {
              present: (token, ka) => Effect.sync(() => void tokens.set(token, ka)),
              cleanup: (token) => Effect.sync(() => void tokens.delete(token))
            }
          })
        )
      )
    }),
    ({ server }) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
  ).pipe(Effect.map(({ http01 }) => http01))

/**
 * The agent's responder from its settings: its own HTTP server on `listen`, or files in `webroot`
 * (a web server already on port 80), or none (the agent then refuses http-01 work, see `answer`).
 */
export const fromSettings = (settings: { readonly listen?: string; readonly webroot?: string } | undefined) =>
  settings?.listen
    ? Effect.map(responder(settings.listen), Option.some)
    : Effect.succeed(settings?.webroot ? Option.some(webroot(settings.webroot)) : Option.none<Http01>())

/** Presents or cleans up one challenge, and the acknowledgement to send the control plane. */
export const answer = (
  http01: Option.Option<Http01>,
  work: Work.ChallengeWork
): Effect.Effect<typeof Work.ChallengeAck.Type> =>
  Option.match(http01, {
    onNone: () =>
      Effect.succeed({
        challenge_id: work.challenge_id,
        status: "failed" as const,
        error:
          "this agent has no http-01 responder or webroot configured (CERTCTL_HTTP01_LISTEN / CERTCTL_HTTP01_WEBROOT)"
      }),
    onSome: (h) =>
      Effect.map(
        Effect.either(
          work.action === "present" ? h.present(work.token, work.key_authorization) : h.cleanup(work.token)
        ),
        (result) => ({
          challenge_id: work.challenge_id,
          status: result._tag === "Left" ? ("failed" as const) : work.action === "present" ? "ready" : "removed",
          ...(result._tag === "Left" ? { error: result.left.message.slice(0, 2000) } : {})
        })
      )
  })
