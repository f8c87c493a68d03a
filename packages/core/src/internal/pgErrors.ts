import { pgCode } from "../Persistence.js"

const field = (o: unknown, key: string): unknown =>
  typeof o === "object" && o !== null ? (o as Record<string, unknown>)[key] : undefined

/** The violated constraint's name of an SqlError (or of the PersistenceError around one), or "". */
export const constraintOf = (error: unknown): string =>
  String(field(field(error, "cause"), "constraint") ?? field(field(field(error, "cause"), "cause"), "constraint") ?? "")

export const isUniqueViolation = (error: unknown) => pgCode(error) === "23505"
export const isForeignKeyViolation = (error: unknown) => pgCode(error) === "23503"
