import type { SqlError } from "@effect/sql/SqlError"
import { Data, Effect, Schema } from "effect"

/** Every SqlError becomes this one error, naming what was being done. */
export class PersistenceError extends Data.TaggedError("PersistenceError")<{
  readonly operation: string
  readonly message: string
  readonly cause?: unknown
}> {}

const field = (value: unknown, key: string): unknown =>
  typeof value === "object" && value !== null && key in value ? (value as Record<string, unknown>)[key] : undefined

const isSqlError = (e: unknown): e is SqlError => field(e, "_tag") === "SqlError"

/** PostgreSQL error code of an SqlError's cause, e.g. "23505" for a unique violation. */
export const pgCode = (error: unknown): string | undefined => {
  const code = field(field(error, "cause") ?? error, "code")
  return typeof code === "string" ? code : undefined
}

export const orPersistence =
  (operation: string) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, Exclude<E, SqlError> | PersistenceError, R> =>
    Effect.mapError(self, (e) =>
      isSqlError(e)
        ? new PersistenceError({
            operation,
            message: `${operation}: ${field(e.cause, "message") ?? e.message}`,
            cause: e
          })
        : // Not an SqlError, so it is one of E's other members.
          (e as Exclude<E, SqlError>)
    )

// One array decoder per row schema: effect compiles a parser per schema AST, and a fresh
// `Schema.Array(row)` per query is a fresh AST, so every query compiled its decoder again (about
// 60 µs of CPU and its garbage per call, on every API-key lookup; bench/README.md "Fleet").
const rowDecoders = new WeakMap<Schema.Schema.Any, (rows: unknown) => Effect.Effect<ReadonlyArray<unknown>, unknown>>()

const rowsDecoder = <A, I>(schema: Schema.Schema<A, I>) => {
  let decode = rowDecoders.get(schema)
  if (decode === undefined) {
    decode = Schema.decodeUnknown(Schema.Array(schema))
    rowDecoders.set(schema, decode)
  }
  return decode as (rows: unknown) => Effect.Effect<ReadonlyArray<A>, unknown>
}

/**
 * Decodes result rows with a schema. A row that does not fit is a defect, not an error to handle:
 * the migrations and the schema disagree.
 */
export const decodeRows =
  <A, I>(schema: Schema.Schema<A, I>) =>
  <E, R>(self: Effect.Effect<ReadonlyArray<unknown>, E, R>): Effect.Effect<ReadonlyArray<A>, E, R> => {
    const decode = rowsDecoder(schema)
    return Effect.flatMap(self, (rows) => Effect.orDie(decode(rows)))
  }
