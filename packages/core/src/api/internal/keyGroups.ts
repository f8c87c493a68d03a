import { HttpApiEndpoint, HttpApiGroup } from "@effect/platform"
import { Schema } from "effect"
import * as E from "../ApiError.js"
import * as AgentClientCerts from "../../domain/models/clientCerts.js"
import * as ApiKeyManagement from "../../domain/models/apiKeys.js"
import * as M from "../../domain/Models.js"
import { AdminAuthentication, AgentOrAdminAuthentication } from "../Security.js"
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

/**
 * Agents' TLS client certificates (optional mTLS): an agent asks for its own with its API key (the
 * one agent endpoint that a server requiring mTLS still serves without a client certificate), an
 * admin revokes an agent's.
 */
export class AgentTlsGroup extends HttpApiGroup.make("agentTls")
  .add(
    HttpApiEndpoint.post("issue", "/agents/:id/client-certificate")
      .setPath(IdPath)
      .setPayload(AgentClientCerts.RequestClientCertificate)
      .addSuccess(AgentClientCerts.ClientCertificate, { status: 201 })
      .addError(E.Conflict)
      .addError(E.Unprocessable)
      .middleware(AgentOrAdminAuthentication)
  )
  .add(
    HttpApiEndpoint.del("revoke", "/agents/:id/client-certificates")
      .setPath(IdPath)
      .addSuccess(AgentClientCerts.RevokedClientCertificates)
      .middleware(AdminAuthentication)
  )
  .prefix("/api/v1") {}
