import { Schema } from "effect"

/**
 * Every string a connector config carries has a maximum length, checked before any pattern,
 * filter or URL parse runs on it: a config arrives through the API, and bad input must be cheap to
 * refuse (a 1 MiB host name must not reach a regular expression). The sizes fit real values: DNS
 * names (253), e-mail addresses (254), a CA bundle as large as the public roots (512 KiB).
 */
export const Limits = {
  host: 253,
  email: 254,
  name: 255,
  user: 256,
  secret: 1024,
  url: 2048,
  path: 4096,
  command: 4096,
  header: 8192,
  sshKey: 32_768,
  pem: 65_536,
  bundle: 524_288
} as const

/** A string of at most `max` characters; the refusal names the limit, not the value. */
export const Bounded = (max: number) =>
  Schema.String.pipe(Schema.maxLength(max, { message: () => `must be at most ${max} characters long` }))

/** `Schema.NonEmptyTrimmedString`, bounded first. */
export const NonEmptyTrimmed = (max: number) => Bounded(max).pipe(Schema.trimmed(), Schema.nonEmptyString())
