import { HttpApiEndpoint, HttpApiGroup } from "@effect/platform"
import { Schema } from "effect"
import * as E from "../ApiError.js"
import * as ApiKeyManagement from "../../services/ApiKeyManagement.js"
import * as M from "../../domain/Models.js"
import { AdminAuthentication } from "../Security.js"
import { Cursor, IdPath, Limit } from "./params.js"

/**
 * API keys (admin, viewer, agent) as an admin manages them. Admin only, listing included: a key
 * list tells who can do what.
 */
export class ApiKeysGroup extends HttpApiGroup.make("apiKeys")
  .add(
    HttpApiEndpoint.post("create", "/api-keys")
      .setPayload(ApiKeyManagement.CreateApiKey)
      .addSuccess(ApiKeyManagement.CreatedApiKey, { status: 201 })
      .addError(E.Conflict)
  )
  .add(
    HttpApiEndpoint.get("list", "/api-keys")
      .setUrlParams(
        Schema.Struct({
          role: Schema.optional(ApiKeyManagement.KeyRole.annotations({ description: "Only keys of this role" })),
          agent_id: Schema.optional(M.Id.annotations({ description: "Only this agent's keys" })),
          cursor: Schema.optional(Cursor),
          limit: Schema.optional(Limit)
        })
      )
      .addSuccess(M.page(ApiKeyManagement.ApiKey))
  )
  .add(HttpApiEndpoint.get("get", "/api-keys/:id").setPath(IdPath).addSuccess(ApiKeyManagement.ApiKey))
  .add(
    HttpApiEndpoint.del("revoke", "/api-keys/:id")
      .setPath(IdPath)
      .addSuccess(ApiKeyManagement.ApiKey)
      .addError(E.Conflict)
  )
  .middleware(AdminAuthentication)
  .prefix("/api/v1") {}
