import type { SqlError } from "@effect/sql/SqlError"
import { Data, Effect } from "effect"

/** Every SqlError becomes this one error, naming what was being done. */
export class PersistenceError extends Data.TaggedError("PersistenceError")<{
  readonly operation: string
  readonly message: string
  readonly cause?: unknown
}> {}

/** PostgreSQL error code of an SqlError's cause, e.g. "23505" for a unique violation. */
export const pgCode = (error: unknown): string | undefined => {
  const cause = (error as any)?.cause ?? error
  return typeof cause?.code === "string" ? cause.code : undefined
}

export const orPersistence =
  (operation: string) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, Exclude<E, SqlError> | PersistenceError, R> =>
    Effect.catchIf(
      self,
      (e: any): e is any => e?._tag === "SqlError",
      (e: any) =>
        Effect.fail(
          new PersistenceError({ operation, message: `${operation}: ${e?.cause?.message ?? e?.message}`, cause: e })
        )
    ) as any
