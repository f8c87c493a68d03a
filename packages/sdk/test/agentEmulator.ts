import { webcrypto } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { KeyAlgorithm, type Work } from "@certctl/core"
import { FetchHttpClient } from "@effect/platform"
import * as x509 from "@peculiar/x509"
import { Duration, Effect, Fiber, Redacted, Schedule } from "effect"
import * as Client from "../src/Client.js"

/**
 * The agent's half of the protocol, driven through the SDK with the agent's own key: long-poll
 * for work, answer CSR requests with a fresh key's CSR, write deployed certificates into file
 * targets and report them. It exists so contract tests can take jobs to COMPLETED against the
 * real server; the private keys stay in this process, as they would on a real agent.
 */

const buildCsr = async (alg: KeyAlgorithm.KeyAlgorithm, names: ReadonlyArray<string>): Promise<string> => {
  const keys = (await webcrypto.subtle.generateKey(KeyAlgorithm.webCryptoKeyParams(alg) as never, true, [
    "sign",
    "verify"
  ])) as webcrypto.CryptoKeyPair
  const signingAlgorithm = alg.startsWith("ecdsa")
    ? { name: "ECDSA", hash: "SHA-256" }
    : { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: [{ CN: [names[0]] }],
      keys,
      signingAlgorithm,
      extensions: [new x509.SubjectAlternativeNameExtension(names.map((value) => ({ type: "dns" as const, value })))]
    },
    webcrypto as never
  )
  return csr.toString("pem")
}

export interface EmulatedAgent {
  /** Work items handled so far, e.g. "csr job-1", "deploy job-2". */
  readonly handled: ReadonlyArray<string>
  stop(): Promise<void>
}

export const startAgent = (url: string, agentId: string, apiKey: string): EmulatedAgent => {
  const handled: Array<string> = []
  const done = new Set<string>()

  const handle = (api: Client.Service, item: Work.WorkItem) =>
    Effect.gen(function* () {
      const key = `${item.type} ${item.job_id}`
      if (done.has(key)) return
      if (item.type === "csr") {
        const csr = yield* Effect.promise(() => buildCsr(item.key_algorithm, item.names))
        yield* api.csr.submit({ payload: { cert_id: item.certificate_id, csr, job_id: item.job_id } })
      } else if (item.type === "deploy") {
        for (const target of item.targets) {
          const dir = path.join(String(target.config.directory), item.domain)
          yield* Effect.promise(async () => {
            await fs.mkdir(dir, { recursive: true })
            await fs.writeFile(path.join(dir, "cert.pem"), item.certificate_pem)
            await fs.writeFile(path.join(dir, "chain.pem"), item.chain_pem)
          })
          yield* api.deployments.status({
            path: { id: target.deployment_id },
            payload: { status: "success", serial: item.serial, verified: false, verification: "emulated agent" }
          })
        }
      } else {
        return
      }
      done.add(key)
      handled.push(key)
    })

  const loop = Effect.gen(function* () {
    const api = yield* Client.make({ url, apiKey: Redacted.make(apiKey) })
    while (true) {
      const work = yield* api.agents.work({ path: { id: agentId }, urlParams: { wait: 1 } })
      for (const item of work.items) yield* handle(api, item)
      if (work.items.length === 0) yield* Effect.sleep(Duration.millis(50))
    }
  }).pipe(
    // A failed poll (e.g. while the server is busy) is retried; the test's own assertions judge the outcome.
    Effect.tapError((e) => Effect.logWarning("emulated agent", e)),
    Effect.retry(Schedule.spaced(Duration.millis(200))),
    Effect.provide(FetchHttpClient.layer)
  )

  const fiber = Effect.runFork(loop)
  return {
    handled,
    stop: () => Effect.runPromise(Fiber.interrupt(fiber)).then(() => undefined)
  }
}
