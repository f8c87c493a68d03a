import { ApiError, Models } from "@certctl/core"
import { Effect } from "effect"

/** Row → wire model conversions shared by handlers. */
export const iso = (d: Date | string | null | undefined): string | null =>
  d === null || d === undefined ? null : (d instanceof Date ? d : new Date(d)).toISOString()
export const isoReq = (d: Date | string): string => iso(d)!

export const certificateColumns = `c.id, c.domain, c.sans, c.issuer_id, c.renewal_policy_id, c.renewal_days_before,
  c.lifetime_seconds::float8 AS lifetime_seconds, c.key_algorithm, c.owner_id, c.team_id, c.agent_id, c.status,
  c.current_version_id, c.not_after, c.renew_at, c.created_at, c.updated_at,
  (SELECT serial FROM certificate_versions v WHERE v.id = c.current_version_id) AS serial,
  coalesce((SELECT array_agg(target_id ORDER BY target_id) FROM certificate_targets ct WHERE ct.certificate_id = c.id), '{}') AS target_ids`

export const toCertificate = (r: any) =>
  new Models.Certificate({
    id: r.id,
    domain: r.domain,
    sans: r.sans,
    names: [r.domain, ...r.sans.filter((s: string) => s !== r.domain)],
    issuer_id: r.issuer_id,
    target_ids: r.target_ids,
    renewal_policy_id: r.renewal_policy_id,
    renewal_days_before: Number(r.renewal_days_before),
    lifetime_seconds: Number(r.lifetime_seconds),
    key_algorithm: r.key_algorithm,
    owner_id: r.owner_id,
    team_id: r.team_id,
    agent_id: r.agent_id,
    status: r.status,
    current_version_id: r.current_version_id,
    serial: r.serial ?? null,
    not_after: iso(r.not_after),
    renew_at: iso(r.renew_at),
    created_at: isoReq(r.created_at),
    updated_at: isoReq(r.updated_at)
  })

export const toVersion = (r: any) =>
  new Models.CertificateVersion({
    id: r.id,
    certificate_id: r.certificate_id,
    version: r.version,
    serial: r.serial,
    not_before: isoReq(r.not_before),
    not_after: isoReq(r.not_after),
    fingerprint_sha256: r.fingerprint_sha256,
    certificate_pem: r.certificate_pem,
    chain_pem: r.chain_pem,
    issued_at: isoReq(r.issued_at),
    revoked_at: iso(r.revoked_at),
    revocation_reason: r.revocation_reason
  })

export const toDeployment = (r: any) =>
  new Models.Deployment({
    id: r.id,
    certificate_id: r.certificate_id,
    version_id: r.version_id,
    target_id: r.target_id,
    job_id: r.job_id,
    agent_id: r.agent_id,
    status: r.status,
    serial: r.serial,
    verified: r.verified,
    verification: r.verification,
    error: r.error,
    duration_ms: r.duration_ms,
    deployed_at: iso(r.deployed_at),
    created_at: isoReq(r.created_at)
  })

export const toJob = (r: any, steps?: ReadonlyArray<any>) =>
  new Models.Job({
    id: r.id,
    kind: r.kind,
    certificate_id: r.certificate_id,
    agent_id: r.agent_id,
    version_id: r.version_id,
    state: r.state,
    attempts: r.attempts,
    max_attempts: r.max_attempts,
    run_at: isoReq(r.run_at),
    error_reason: r.error_reason,
    last_error: r.last_error,
    created_at: isoReq(r.created_at),
    updated_at: isoReq(r.updated_at),
    started_at: iso(r.started_at),
    finished_at: iso(r.finished_at),
    steps: steps?.map(
      (s) =>
        new Models.JobStep({
          seq: s.seq,
          name: s.name,
          state: s.state,
          started_at: iso(s.started_at),
          finished_at: iso(s.finished_at),
          deadline_at: iso(s.deadline_at),
          // Certificates in step output are public, but bulky: the versions endpoint serves them.
          output: Object.fromEntries(Object.entries(s.output ?? {}).filter(([k]) => !k.endsWith("_pem"))),
          error: s.error
        })
    )
  })

export const toAgent = (r: any) =>
  new Models.Agent({
    id: r.id,
    name: r.name,
    status: r.status,
    hostname: r.hostname,
    version: r.version,
    last_seen_at: iso(r.last_seen_at),
    created_at: isoReq(r.created_at),
    retired_at: iso(r.retired_at)
  })

/** Keyset pagination over text ids (time-ordered by construction). */
export const encodeCursor = (id: string) => Buffer.from(`i:${id}`).toString("base64url")

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

export const badCursor = ApiError.badRequest("cursor is not one this server handed out (use next_cursor verbatim)", {
  issues: [{ path: "cursor", message: "invalid cursor" }]
})

export const pageOf = <A extends { id: string }>(rows: ReadonlyArray<A>, limit: number) => ({
  items: rows.slice(0, limit),
  next_cursor: rows.length > limit ? encodeCursor(rows[limit - 1].id) : null
})
