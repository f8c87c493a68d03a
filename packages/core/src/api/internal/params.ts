import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import * as E from "../ApiError.js"
import { AdminAuthentication, ReaderAuthentication } from "../Security.js"
import * as M from "../../domain/Models.js"

/**
 * Path and query parameters every group shares, and the CRUD group builders.
 */

/** A number in a query string: a few characters, not a megabyte of digits. */
export const NumberText = Schema.String.pipe(Schema.maxLength(20))

export const IdPath = Schema.Struct({
  id: M.Id.annotations({ description: "The resource's id", examples: ["web-example-com"] })
})
export const Cursor = Schema.String.pipe(Schema.maxLength(200)).annotations({
  description: "The `next_cursor` of the previous page; leave out for the first page"
})
export const Limit = NumberText.pipe(
  Schema.compose(Schema.NumberFromString),
  Schema.int(),
  Schema.between(1, 1000)
).annotations({
  description: "Items per page, 1 to 1000 (100 when left out)"
})
export const DateParam = M.IsoDate

export const connectorCrud = <const Name extends string>(name: Name, path: string) =>
  HttpApiGroup.make(name)
    .add(
      HttpApiEndpoint.get("list", `/${path}`)
        .setUrlParams(
          Schema.Struct({
            cursor: Schema.optional(Cursor),
            limit: Schema.optional(Limit),
            type: Schema.optional(
              Schema.String.pipe(Schema.maxLength(40)).annotations({ description: "Only connectors of this type" })
            )
          })
        )
        .addSuccess(M.page(M.ConnectorResource))
        .middleware(ReaderAuthentication)
    )
    .add(
      HttpApiEndpoint.post("create", `/${path}`)
        .setPayload(M.CreateConnector)
        .addSuccess(M.ConnectorResource, { status: 201 })
        .addError(E.Conflict)
        .addError(E.Unprocessable)
        .middleware(AdminAuthentication)
    )
    .add(
      HttpApiEndpoint.get("get", `/${path}/:id`)
        .setPath(IdPath)
        .addSuccess(M.ConnectorResource)
        .middleware(ReaderAuthentication)
    )
    .add(
      HttpApiEndpoint.patch("update", `/${path}/:id`)
        .setPath(IdPath)
        .setPayload(M.UpdateConnector)
        .addSuccess(M.ConnectorResource)
        .addError(E.Conflict)
        .addError(E.Unprocessable)
        .middleware(AdminAuthentication)
    )
    .add(
      HttpApiEndpoint.del("delete", `/${path}/:id`)
        .setPath(IdPath)
        .addSuccess(HttpApiSchema.NoContent)
        .addError(E.Conflict)
        .middleware(AdminAuthentication)
    )
    .add(
      HttpApiEndpoint.post("validate", `/${path}/:id/validate`)
        .setPath(IdPath)
        .addSuccess(M.ValidationResult)
        .addError(E.Unprocessable)
        .middleware(AdminAuthentication)
    )
    .prefix("/api/v1")

export const simpleCrud = <const Name extends string, A, I, C, CI, U, UI>(
  name: Name,
  path: string,
  model: Schema.Schema<A, I>,
  create: Schema.Schema<C, CI>,
  update: Schema.Schema<U, UI>
) =>
  HttpApiGroup.make(name)
    .add(
      HttpApiEndpoint.get("list", `/${path}`)
        .setUrlParams(Schema.Struct({ cursor: Schema.optional(Cursor), limit: Schema.optional(Limit) }))
        .addSuccess(M.page(model))
        .middleware(ReaderAuthentication)
    )
    .add(
      HttpApiEndpoint.post("create", `/${path}`)
        .setPayload(create)
        .addSuccess(model, { status: 201 })
        .addError(E.Conflict)
        .middleware(AdminAuthentication)
    )
    .add(HttpApiEndpoint.get("get", `/${path}/:id`).setPath(IdPath).addSuccess(model).middleware(ReaderAuthentication))
    .add(
      HttpApiEndpoint.patch("update", `/${path}/:id`)
        .setPath(IdPath)
        .setPayload(update)
        .addSuccess(model)
        .addError(E.Conflict)
        .middleware(AdminAuthentication)
    )
    .add(
      HttpApiEndpoint.del("delete", `/${path}/:id`)
        .setPath(IdPath)
        .addSuccess(HttpApiSchema.NoContent)
        .addError(E.Conflict)
        .middleware(AdminAuthentication)
    )
    .prefix("/api/v1")
