import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import * as E from "../ApiError.js"
import * as ConnectorCatalog from "../../domain/models/connectorTypes.js"
import * as M from "../../domain/Models.js"
import { Authentication, MetricsAuthentication, ReaderAuthentication } from "../Security.js"

/**
 * Health, readiness and metrics, the session, connector types and the job events stream.
 */

export class OperationsGroup extends HttpApiGroup.make("operations")
  .add(
    HttpApiEndpoint.get("healthz", "/healthz").addSuccess(
      Schema.Struct({ status: Schema.Literal("ok").annotations({ description: "Always ok" }) })
    )
  )
  .add(
    HttpApiEndpoint.get("readyz", "/readyz")
      .addSuccess(
        Schema.Struct({
          status: Schema.Literal("ready").annotations({ description: "Always ready on 200" }),
          database: Schema.String.annotations({ description: "postgres or pglite", examples: ["postgres"] }),
          migration: Schema.Number.annotations({ description: "The database's schema migration", examples: [3] })
        })
      )
      .addError(E.Unavailable)
  )
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .addSuccess(
        Schema.String.pipe(HttpApiSchema.withEncoding({ kind: "Text", contentType: "text/plain; version=0.0.4" }))
      )
      .middleware(MetricsAuthentication)
  ) {}

export class SessionGroup extends HttpApiGroup.make("session")
  .add(HttpApiEndpoint.get("whoami", "/whoami").addSuccess(M.WhoAmI))
  .middleware(Authentication)
  .prefix("/api/v1") {}

export class ConnectorTypesGroup extends HttpApiGroup.make("connectorTypes")
  .add(
    HttpApiEndpoint.get("list", "/connector-types").addSuccess(
      Schema.Struct({
        items: Schema.Array(ConnectorCatalog.ConnectorType).annotations({
          description: "Issuer types first, then targets, then notifiers; by type name within each"
        })
      })
    )
  )
  .middleware(ReaderAuthentication)
  .prefix("/api/v1") {}

/**
 * Server-sent events. The handler answers with a raw streaming response; the schema here only
 * documents it (a derived client would wait for the stream to end: read it with `fetch`).
 */
export class JobEventsGroup extends HttpApiGroup.make("jobEvents")
  .add(
    HttpApiEndpoint.get("stream", "/jobs/events")
      .addSuccess(
        Schema.String.pipe(HttpApiSchema.withEncoding({ kind: "Text", contentType: "text/event-stream" })).annotations({
          description:
            "Server-sent events: `event: job` with `data:` a JSON JobEvent per change, and `: heartbeat` comments every 15 s",
          examples: [
            'event: job\ndata: {"job_id":"job-01hx7z","certificate_id":"web-example-com","agent_id":"agent-web-1","kind":"issuance","state":"RUNNING","step":{"seq":2,"name":"await_csr","state":"RUNNING"},"updated_at":"2026-01-31T12:00:00.000Z"}\n\n'
          ]
        })
      )
      .addError(E.RateLimited)
      .middleware(ReaderAuthentication)
  )
  .prefix("/api/v1") {}
