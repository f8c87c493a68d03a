import { Schema } from "effect"

/**
 * What every wire model shares: timestamps as ISO strings, ids, names, strict operator payloads,
 * serials, dates and the page envelope.
 */
/**
 * Strings the control plane answers with (ids, names, statuses; PEM and free text), bounded so
 * that a client decoding an answer (the agent, the SDK) takes no unbounded string from a broken or
 * hostile server. Generous: what the server stores was validated tighter on the way in.
 */
export const WireText = Schema.String.pipe(Schema.maxLength(1024))
export const WireLongText = Schema.String.pipe(Schema.maxLength(65_536))
export const Timestamp = Schema.String.pipe(Schema.maxLength(64))
export const NullableTimestamp = Schema.NullOr(Timestamp)

/**
 * Whether a string is well-formed Unicode without NUL. `isWellFormed` (ES2024, Node 20) and
 * `indexOf` scan at memory speed; the equivalent `/\0|\p{Surrogate}/u` took about half a
 * millisecond per megabyte of hostile input, on the request's event loop.
 */
const wellFormed = (s: string) =>
  s.indexOf("\u0000") < 0 && (s as unknown as { isWellFormed(): boolean }).isWellFormed()
/**
 * Free text of at most `max` UTF-16 code units. The length is checked first, so a megabyte of
 * input costs one comparison; then the text must be well-formed Unicode without NUL: a lone
 * surrogate cannot be encoded as UTF-8 and PostgreSQL text cannot hold NUL, so either would
 * only fail later, as a 500.
 */
export const Text = (max: number) =>
  Schema.String.pipe(
    Schema.maxLength(max),
    Schema.filter((s) => wellFormed(s) || "must be well-formed Unicode text without NUL characters")
  )
/** Whether a string is well-formed Unicode without NUL (what `Text` accepts, length aside). */
export const isWellFormedText = (s: string): boolean => wellFormed(s)

export const Id = Schema.String.pipe(
  Schema.maxLength(64),
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, {
    message: () => "must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"
  })
)
export const Name = Text(200).pipe(Schema.minLength(1))
export const Config = Schema.Record({ key: Text(200), value: Schema.Unknown })
/**
 * Operator payloads refuse unknown fields, so a typo ("renewal_day_before") is a 400 rather than a
 * silently ignored setting. Agent reports stay lenient so newer agents can add fields.
 */
export const strict = { parseOptions: { onExcessProperty: "error" as const } }

export const CertificateStatus = Schema.Literal(
  "pending",
  "active",
  "renewing",
  "failed",
  "expired",
  "revoked",
  "archived"
)
export type CertificateStatus = typeof CertificateStatus.Type

export const Serial = Schema.String.pipe(
  Schema.maxLength(128),
  Schema.pattern(/^[0-9a-fA-F:]{1,128}$/, { message: () => "must be a hex serial" })
)
const isoDate = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:[Zz]|[+-]\d{2}:?\d{2})?)?$/
const daysIn = (y: number, m: number) =>
  m === 2 ? ((y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28) : [4, 6, 9, 11].includes(m) ? 30 : 31
/**
 * An ISO 8601 date or timestamp ("2025-01-31", "2025-01-31T12:00:00Z"). `Date.parse` alone takes
 * "0", "-1" or "2024-02-30" and years PostgreSQL cannot store, so the form is checked first.
 */
export const IsoDate = Schema.String.pipe(
  Schema.maxLength(40),
  Schema.filter((s) => {
    const m = isoDate.exec(s)
    const ok = m !== null && Number(m[2]) >= 1 && Number(m[2]) <= 12 && Number(m[3]) >= 1
    return (
      (ok && Number(m[3]) <= daysIn(Number(m[1]), Number(m[2])) && !Number.isNaN(Date.parse(s))) ||
      "must be an ISO 8601 date or timestamp, e.g. 2025-01-31 or 2025-01-31T12:00:00Z"
    )
  })
)
export const DateInput = IsoDate

export const page = <A, I, R>(item: Schema.Schema<A, I, R>) =>
  Schema.Struct({
    items: Schema.Array(item).annotations({ description: "This page's items, in id order" }),
    next_cursor: Schema.NullOr(Schema.String).annotations({
      description: "Pass as `cursor` to get the next page; null on the last page",
      examples: ["Y2VydC0wMDAx"]
    })
  })

/** Days before expiry (renewal and warnings): at most ten years. */
export const Days = Schema.Number.pipe(Schema.finite(), Schema.nonNegative(), Schema.lessThanOrEqualTo(3650))
