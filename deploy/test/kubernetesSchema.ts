import * as path from "node:path"
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy"
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget"
import { ConfigMap, Namespace, Secret, Service, ServiceAccount } from "kubernetes-models/v1"
import { DaemonSet, Deployment, StatefulSet } from "kubernetes-models/apps/v1"
import ts from "typescript"

/**
 * Kubernetes manifests checked against the Kubernetes 1.33 OpenAPI schemas that the pinned
 * `kubernetes-models` package (4.5.1) compiles into validators, plus an unknown-field check: the
 * official schemas allow any extra field, while the API server (and `kubectl apply`, strict field
 * validation by default) rejects them, so each object is also type-checked against the package's
 * declarations, whose excess-property checks catch a misspelt field such as `readinesProbe`.
 */

export interface K8sObject {
  readonly apiVersion: string
  readonly kind: string
  readonly metadata: { readonly name: string; readonly namespace?: string; readonly labels?: Record<string, string> }
  readonly [key: string]: unknown
}

interface ModelClass {
  new (data: any): { validate(): void }
}

/** Every kind the manifests use; any other kind fails: nothing goes unvalidated. */
const models: Record<string, { readonly model: ModelClass; readonly module: string; readonly type: string }> = {
  "v1/Namespace": { model: Namespace, module: "kubernetes-models/v1/Namespace", type: "INamespace" },
  "v1/ServiceAccount": {
    model: ServiceAccount,
    module: "kubernetes-models/v1/ServiceAccount",
    type: "IServiceAccount"
  },
  "v1/ConfigMap": { model: ConfigMap, module: "kubernetes-models/v1/ConfigMap", type: "IConfigMap" },
  "v1/Secret": { model: Secret, module: "kubernetes-models/v1/Secret", type: "ISecret" },
  "v1/Service": { model: Service, module: "kubernetes-models/v1/Service", type: "IService" },
  "apps/v1/Deployment": { model: Deployment, module: "kubernetes-models/apps/v1/Deployment", type: "IDeployment" },
  "apps/v1/StatefulSet": { model: StatefulSet, module: "kubernetes-models/apps/v1/StatefulSet", type: "IStatefulSet" },
  "apps/v1/DaemonSet": { model: DaemonSet, module: "kubernetes-models/apps/v1/DaemonSet", type: "IDaemonSet" },
  "policy/v1/PodDisruptionBudget": {
    model: PodDisruptionBudget,
    module: "kubernetes-models/policy/v1/PodDisruptionBudget",
    type: "IPodDisruptionBudget"
  },
  "networking.k8s.io/v1/NetworkPolicy": {
    model: NetworkPolicy,
    module: "kubernetes-models/networking.k8s.io/v1/NetworkPolicy",
    type: "INetworkPolicy"
  }
}

const key = (o: { apiVersion?: unknown; kind?: unknown }) => `${String(o.apiVersion)}/${String(o.kind)}`

/** Schema errors of one object ("" path = the object itself); empty when it is valid. */
export const schemaErrors = (obj: K8sObject): ReadonlyArray<string> => {
  const entry = models[key(obj)]
  if (!entry) return [`no Kubernetes schema for ${key(obj)} here: add it to deploy/test/kubernetesSchema.ts`]
  try {
    new entry.model(obj).validate()
    return []
  } catch (e) {
    const errors = (e as { errors?: ReadonlyArray<{ instancePath: string; message?: string }> }).errors
    return errors ? errors.map((x) => `${x.instancePath || "/"} ${x.message ?? "is invalid"}`) : [String(e)]
  }
}

/**
 * Unknown or mistyped fields, found by the TypeScript compiler on a generated module that assigns
 * each object, as a literal, to its kind's declared type. One program for all objects (~2 s).
 */
export const fieldErrors = (
  objects: ReadonlyArray<{ readonly label: string; readonly obj: K8sObject }>
): ReadonlyArray<string> => {
  const file = path.join(path.dirname(new URL(import.meta.url).pathname), "__manifests_fields__.ts")
  const imports = new Set<string>()
  const spans: Array<{ readonly label: string; readonly start: number; readonly end: number }> = []
  let body = ""
  const problems: Array<string> = []
  objects.forEach(({ label, obj }, i) => {
    const entry = models[key(obj)]
    if (!entry) {
      problems.push(`${label}: no declarations for ${key(obj)}`)
      return
    }
    imports.add(`import type { ${entry.type} } from "${entry.module}"\n`)
    const decl = `export const m${i}: ${entry.type} = ${JSON.stringify(obj, null, 1)}\n`
    spans.push({ label, start: body.length, end: body.length + decl.length })
    body += decl
  })
  const header = [...imports].join("")
  const source = header + body
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    types: []
  }
  const host = ts.createCompilerHost(options)
  const read = host.getSourceFile.bind(host)
  host.getSourceFile = (name, version, ...rest) =>
    path.resolve(name) === file ? ts.createSourceFile(name, source, version) : read(name, version, ...rest)
  const fileExists = host.fileExists.bind(host)
  host.fileExists = (name) => path.resolve(name) === file || fileExists(name)
  const program = ts.createProgram([file], options, host)
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const at = (d.start ?? 0) - header.length
    const span = spans.find((s) => at >= s.start && at < s.end)
    problems.push(`${span?.label ?? "manifests"}: ${ts.flattenDiagnosticMessageText(d.messageText, " ")}`)
  }
  return problems
}
