import { SqlClient } from "@effect/sql"
import { Effect, Layer, ManagedRuntime } from "effect"
import { AuditLog } from "./packages/core/src/AuditLog.ts"
import { backends, migrated } from "./packages/core/test/backends.ts"
const made = await backends[0].make()
const rt = ManagedRuntime.make(Layer.provideMerge(AuditLog.Default, migrated(made.layer) as any))
await rt.runPromise(Effect.gen(function* () {
  const a = yield* AuditLog
  for (let i = 0; i < 30; i++) yield* a.append({ actor: { type: "user", id: "x" }, action: "a", resource: { type: "r", id: "1" } })
  const p = yield* a.query({ limit: 5 })
  console.log(p.items.map((i) => [i.seq, i.id, i.timestamp]), p.next_cursor)
  const sql = yield* SqlClient.SqlClient
  console.log(yield* sql`SELECT seq, id, occurred_at FROM audit_logs ORDER BY seq DESC LIMIT 5`)
  console.log(yield* sql`SELECT seq, encode(hash,'hex') h, encode(prev_hash,'hex') p FROM audit_logs ORDER BY seq LIMIT 4`)
}) as any)
await rt.dispose(); await made.cleanup()
