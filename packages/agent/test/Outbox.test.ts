import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { CertctlError } from "@certctl/sdk"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ControlPlane from "../src/ControlPlane.js"
import * as Outbox from "../src/Outbox.js"

/** The outbox over a `ControlPlane` that is not HTTP: order, outages, refusals, old entries. */

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "certctl-agent-outbox-"))

/** A control plane that records deployment statuses and answers with whatever `answer` says. */
const recorder = (answer: (id: string) => ControlPlane.ControlPlaneError | undefined) => {
  const delivered: Array<{ id: string; status: string }> = []
  const service: ControlPlane.Service = {
    endpoint: "memory",
    heartbeat: () => Effect.void,
    work: () => Effect.succeed([]),
    submitCsr: () => Effect.die("unused"),
    reportDeployment: () => Effect.void,
    deploymentStatus: (id, status) =>
      Effect.suspend(() => {
        const error = answer(id)
        if (error) return Effect.fail(error)
        delivered.push({ id, status: status.status })
        return Effect.void
      }),
    ackChallenge: () => Effect.void,
    rotateKey: Effect.die("unused"),
    confirmKey: () => Effect.die("unused")
  }
  return { service, delivered }
}

const status = (id: string, s: "success" | "failed" = "success"): Outbox.Entry => ({
  report: { _tag: "DeploymentStatus", deployment_id: id, status: { status: s, verified: s === "success" } },
  tag: `deploy:${id}`
})

describe("Outbox", () => {
  it.effect("delivers in order, waits while the control plane is away, and drops what it refuses", () =>
    Effect.gen(function* () {
      let away = true
      const { service, delivered } = recorder((id) =>
        away
          ? new ControlPlane.Unreachable({ message: "down" })
          : id === "dep-refused"
            ? new ControlPlane.Refused({ status: 409, code: "conflict", message: "already final" })
            : undefined
      )
      const settled: Array<string | undefined> = []
      const outbox = Outbox.make(tmp(), service, { onSettled: (e) => settled.push(e.tag) })
      for (const id of ["dep-3", "dep-refused", "dep-1", "dep-2"]) yield* outbox.enqueue(status(id))
      expect(outbox.size()).toBe(4)

      const blocked = yield* outbox.flush
      expect(blocked).toEqual({ delivered: 0, blocked: true })
      expect(outbox.size()).toBe(4)

      away = false
      const done = yield* outbox.flush
      expect(done).toEqual({ delivered: 4, blocked: false })
      expect(delivered.map((d) => d.id)).toEqual(["dep-3", "dep-1", "dep-2"])
      expect(settled).toEqual(["deploy:dep-3", "deploy:dep-refused", "deploy:dep-1", "deploy:dep-2"])
      expect(outbox.size()).toBe(0)
    })
  )

  it.effect("delivers entries queued by an older agent (the HTTP call itself) and skips unreadable ones", () =>
    Effect.gen(function* () {
      const dir = tmp()
      fs.writeFileSync(
        path.join(dir, "000000000001.json"),
        JSON.stringify({
          method: "POST",
          path: "/api/v1/deployments/dep-old/status",
          body: { status: "failed", error: "reload failed", verified: false },
          tag: "deploy:job-old"
        })
      )
      fs.writeFileSync(path.join(dir, "000000000002.json"), "{ not json")
      const { service, delivered } = recorder(() => undefined)
      const outbox = Outbox.make(dir, service)
      yield* outbox.enqueue(status("dep-new"))
      expect(fs.readdirSync(dir).sort()).toEqual(["000000000001.json", "000000000002.json", "000000000003.json"])
      yield* outbox.flush
      expect(delivered).toEqual([
        { id: "dep-old", status: "failed" },
        { id: "dep-new", status: "success" }
      ])
      expect(outbox.size()).toBe(0)
    })
  )
})

/** Polls `check` (every 20 ms, up to 10 s): a background delivery settles on its own time. */
const until = (check: () => boolean) =>
  Effect.gen(function* () {
    for (let i = 0; i < 500 && !check(); i++) yield* Effect.sleep("20 millis")
  })

/** An outbox whose control plane is unreachable until `back()`; its deliveries fork into the test's scope. */
const awayAtFirst = Effect.gen(function* () {
  const scope = yield* Effect.scope
  let away = true
  const { service, delivered } = recorder(() => (away ? new ControlPlane.Unreachable({ message: "down" }) : undefined))
  const outbox = Outbox.make(tmp(), service, { fork: (e) => Effect.forkIn(e, scope) })
  return {
    outbox,
    delivered,
    back: () => {
      away = false
    }
  }
})

describe("Outbox.post", () => {
  it.scopedLive("sends a report nothing is queued ahead of at once, and removes its entry once delivered", () =>
    Effect.gen(function* () {
      const scope = yield* Effect.scope
      const { service, delivered } = recorder(() => undefined)
      const settled: Array<string | undefined> = []
      const outbox = Outbox.make(tmp(), service, {
        onSettled: (e) => settled.push(e.tag),
        fork: (e) => Effect.forkIn(e, scope)
      })
      // No drain is called: the post itself sends.
      yield* outbox.post(status("dep-1"))
      yield* until(() => settled.length === 1)
      expect(delivered).toEqual([{ id: "dep-1", status: "success" }])
      expect(settled).toEqual(["deploy:dep-1"])
      expect(outbox.size()).toBe(0)
    })
  )

  it.scopedLive("does not overtake an entry already waiting", () =>
    Effect.gen(function* () {
      const { outbox, delivered, back } = yield* awayAtFirst
      yield* outbox.enqueue(status("dep-1"))
      back()
      // dep-1 waits on disk with no drain running: dep-2 goes behind it, not out at once past it.
      yield* outbox.post(status("dep-2"))
      yield* Effect.sleep("100 millis")
      expect(delivered).toEqual([])
      yield* outbox.drain
      expect(delivered.map((d) => d.id)).toEqual(["dep-1", "dep-2"])
    })
  )

  it.scopedLive("keeps a report whose delivery failed, and delivers it once the control plane is back", () =>
    Effect.gen(function* () {
      const { outbox, delivered, back } = yield* awayAtFirst
      yield* outbox.post(status("dep-1"))
      yield* Effect.sleep("100 millis")
      expect(outbox.size()).toBe(1)
      back()
      yield* until(() => outbox.size() === 0)
      expect(delivered.map((d) => d.id)).toEqual(["dep-1"])
    })
  )
})

describe("ControlPlane errors", () => {
  it("folds the SDK's error into Unreachable, Unauthorized or Refused", () => {
    const of = (status: number, code: string) =>
      ControlPlane.fromCertctlError(new CertctlError({ status, code, message: "m", request_id: "req-1" }))
    expect(of(0, "unreachable")._tag).toBe("Unreachable")
    expect(of(503, "unavailable")._tag).toBe("Unreachable")
    expect(of(429, "rate_limited")._tag).toBe("Unreachable")
    expect(of(401, "unauthorized")).toMatchObject({ _tag: "Unauthorized", request_id: "req-1" })
    expect(of(409, "conflict")).toMatchObject({ _tag: "Refused", status: 409, code: "conflict", request_id: "req-1" })
    expect(of(0, "invalid_response")).toMatchObject({ _tag: "Refused", status: 0 })
    // Too large to read: retried later, like an unreachable server, never dropped as refused.
    expect(of(0, "response_too_large")._tag).toBe("Unreachable")
    expect(ControlPlane.isRetryable(of(502, "server_error"))).toBe(true)
    expect(ControlPlane.isRetryable(of(403, "forbidden"))).toBe(false)
  })
})
