import { randomFillSync } from "node:crypto"
import { Schema } from "effect"

/**
 * Resource ids are short slugs. Operators may choose them (the design document's examples use
 * "issuer-001", "nginx-prod-01"); otherwise they are generated with a kind prefix.
 */
const Slug = Schema.String.pipe(
  Schema.maxLength(64),
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, {
    message: () => "must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"
  })
)

export const TeamId = Slug.pipe(Schema.brand("TeamId"))
export type TeamId = typeof TeamId.Type
export const OwnerId = Slug.pipe(Schema.brand("OwnerId"))
export type OwnerId = typeof OwnerId.Type
export const CertificateId = Slug.pipe(Schema.brand("CertificateId"))
export type CertificateId = typeof CertificateId.Type
export const VersionId = Slug.pipe(Schema.brand("VersionId"))
export type VersionId = typeof VersionId.Type
export const RenewalPolicyId = Slug.pipe(Schema.brand("RenewalPolicyId"))
export type RenewalPolicyId = typeof RenewalPolicyId.Type
export const AgentId = Slug.pipe(Schema.brand("AgentId"))
export type AgentId = typeof AgentId.Type
export const ApiKeyId = Slug.pipe(Schema.brand("ApiKeyId"))
export type ApiKeyId = typeof ApiKeyId.Type
export const TargetId = Slug.pipe(Schema.brand("TargetId"))
export type TargetId = typeof TargetId.Type
export const IssuerId = Slug.pipe(Schema.brand("IssuerId"))
export type IssuerId = typeof IssuerId.Type
export const NotifierId = Slug.pipe(Schema.brand("NotifierId"))
export type NotifierId = typeof NotifierId.Type
export const JobId = Slug.pipe(Schema.brand("JobId"))
export type JobId = typeof JobId.Type
export const DeploymentId = Slug.pipe(Schema.brand("DeploymentId"))
export type DeploymentId = typeof DeploymentId.Type
export const NotificationId = Slug.pipe(Schema.brand("NotificationId"))
export type NotificationId = typeof NotificationId.Type
export const AuditId = Slug.pipe(Schema.brand("AuditId"))
export type AuditId = typeof AuditId.Type

const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"

/**
 * Random bytes for ids, drawn from a pool refilled 4 KiB at a time from the same CSPRNG (as Node's
 * own randomUUID caches its entropy): a randomBytes call per id cost about 5 us, measured on the
 * audit append path, where an id is made for every row.
 */
const pool = Buffer.alloc(4096)
let poolAt = pool.length

/**
 * Time-ordered (so ids sort by creation: 9 base-32 digits of the millisecond) plus 50 random bits
 * (10 base-32 digits, each from one random byte), so only ids made in the same millisecond can collide.
 */
export const make = (prefix: string, now: number = Date.now()): string => {
  let ts = ""
  let t = now
  for (let i = 0; i < 9; i++) {
    ts = alphabet[t % 32] + ts
    t = Math.floor(t / 32)
  }
  if (poolAt + 10 > pool.length) {
    randomFillSync(pool)
    poolAt = 0
  }
  let r = ""
  for (let i = poolAt; i < poolAt + 10; i++) r += alphabet[(pool[i] as number) % 32]
  poolAt += 10
  return `${prefix}-${ts}${r}`
}
