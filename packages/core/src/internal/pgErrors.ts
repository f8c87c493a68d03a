import { pgCode } from "../persistence/Persistence.js"

const field = (o: unknown, key: string): unknown =>
  typeof o === "object" && o !== null ? (o as Record<string, unknown>)[key] : undefined

/** The violated constraint's name of an SqlError (or of the PersistenceError around one), or "". */
export const constraintOf = (error: unknown): string =>
  String(field(field(error, "cause"), "constraint") ?? field(field(field(error, "cause"), "cause"), "constraint") ?? "")

export const isUniqueViolation = (error: unknown) => pgCode(error) === "23505"
/**
 * A write that a foreign key refuses. PostgreSQL 15 reports an ON DELETE RESTRICT refusal as
 * foreign_key_violation (23503); newer versions (PGlite's) as restrict_violation (23001).
 */
export const isForeignKeyViolation = (error: unknown) => pgCode(error) === "23503" || pgCode(error) === "23001"
