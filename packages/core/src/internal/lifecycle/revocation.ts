import { Effect, Option } from "effect"
import * as Certificate from "../../domain/Certificate.js"
import * as JobEngine from "../../engine/JobEngine.js"
import * as Steps from "../../domain/Steps.js"
import { type Context, fail, namesOf } from "./context.js"

/** Revocation: ask the issuer (once; a retry after success does not ask again), then record it. */
export const steps = (ctx: Context): ReadonlyArray<JobEngine.StepDefinition> => {
  const { sql, connectors, notifications, engine, persist, certificate } = ctx

  const revoke: JobEngine.StepDefinition = {
    name: Steps.Revoke,
    run: ({ job }) =>
      Effect.gen(function* () {
        const cert = yield* certificate(job.certificate_id)
        const versionId = job.version_id ?? cert.current_version_id
        const [version] = yield* sql<{
          id: string
          serial: string
          certificate_pem: string
          revoked_at: Date | null
        }>`
            SELECT id, serial, certificate_pem, revoked_at FROM certificate_versions WHERE id = ${versionId}`.pipe(
          persist
        )
        if (!version) return yield* fail("NotFound", `certificate ${cert.id} has no issued version to revoke`)
        const reason = String(job.input.reason ?? "unspecified")
        if (!version.revoked_at) {
          const issuer = yield* connectors.issuer(cert.issuer_id).pipe(Effect.mapError(JobEngine.fromConnectorError))
          yield* issuer
            .revoke({ certificate_pem: version.certificate_pem, reason })
            .pipe(Effect.mapError(JobEngine.fromConnectorError))
        }
        // A compromised key must never be certified again: its SPKI is remembered for CsrIntake.
        const compromised =
          reason === "keyCompromise"
            ? Option.getOrUndefined(
                yield* Effect.option(
                  Effect.map(Certificate.parseCertificate(version.certificate_pem), (c) => c.spki_sha256)
                )
              )
            : undefined
        yield* Effect.gen(function* () {
          if (compromised)
            yield* sql`INSERT INTO compromised_keys (spki_sha256, certificate_id, version_id)
                VALUES (${compromised}, ${cert.id}, ${version.id}) ON CONFLICT DO NOTHING`
          yield* sql`UPDATE certificate_versions SET revoked_at = coalesce(revoked_at, now()), revocation_reason = ${reason}
              WHERE id = ${version.id}`
          yield* sql`UPDATE certificates SET status = CASE WHEN status = 'archived' THEN status ELSE 'revoked' END,
              renew_at = NULL, updated_at = now() WHERE id = ${cert.id}`
          yield* engine.auditResource({ type: "certificate", id: cert.id }, "certificate_revoked", {
            serial: version.serial,
            reason,
            job_id: job.id
          })
          yield* notifications.emit({
            type: "certificate.revoked",
            certificate_id: cert.id,
            event: {
              certificate: { id: cert.id, domain: cert.domain, names: namesOf(cert), serial: version.serial },
              reason
            }
          })
        }).pipe(sql.withTransaction, persist)
        return JobEngine.done({ serial: version.serial })
      })
  }

  return [revoke]
}
