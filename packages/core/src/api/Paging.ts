import { Effect } from "effect"
import * as ApiError from "./ApiError.js"

/**
 * Keyset pagination over text ids (time-ordered by construction). A cursor is the last id of a
 * page, base64url-encoded; list operations fetch `limit + 1` rows to know whether a next page exists.
 */
export const encodeCursor = (id: string) => Buffer.from(`i:${id}`).toString("base64url")

export const badCursor = ApiError.badRequest("cursor is not one this server handed out (use next_cursor verbatim)", {
  issues: [{ path: "cursor", message: "invalid cursor" }]
})

/**
 * The id a cursor continues after. A cursor this server did not hand out is a 400, not a silent
 * first (or empty) page: it must decode and re-encode to itself.
 */
export const cursorAfter = (cursor: string | undefined): Effect.Effect<string | undefined, ApiError.BadRequest> => {
  if (cursor === undefined) return Effect.succeed(undefined)
  const s = Buffer.from(cursor, "base64url").toString()
  return s.startsWith("i:") && s.length > 2 && encodeCursor(s.slice(2)) === cursor
    ? Effect.succeed(s.slice(2))
    : Effect.fail(badCursor)
}

export interface Page<A> {
  readonly items: ReadonlyArray<A>
  readonly next_cursor: string | null
}

/** The first `limit` rows, and a cursor when a further row was fetched. */
export const pageOf = <A extends { readonly id: string }>(rows: ReadonlyArray<A>, limit: number) => ({
  items: rows.slice(0, limit),
  next_cursor: rows.length > limit ? encodeCursor(rows[limit - 1].id) : null
})

/** What every list operation takes. */
export interface PageRequest {
  readonly cursor?: string
  readonly limit?: number
}
