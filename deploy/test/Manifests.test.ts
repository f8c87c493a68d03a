import * as fs from "node:fs"
import * as path from "node:path"
import { AgentConfig } from "@certctl/agent"
import { Schema } from "effect"
import { describe, expect, it } from "vitest"
import { parse, parseAllDocuments } from "yaml"
import { composeSchemaErrors, InterpolationError, interpolate, parseEnvFile, variables } from "./composeSpec.js"
import { fieldErrors, type K8sObject, schemaErrors } from "./kubernetesSchema.js"

/**
 * The deployment manifests (deploy/compose, deploy/kubernetes, deploy/systemd): each validated
 * against its format's schema, with a deliberately broken copy to show the validator rejects, and
 * the design's requirements asserted on the parsed objects. `.ci/manifests.sh` runs the real tools
 * (docker-compose, podman-compose, systemd-analyze, kustomize) on the same files.
 */

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..")
const deploy = (...p: Array<string>) => path.join(root, "deploy", ...p)
const read = (p: string) => fs.readFileSync(p, "utf8")
const clone = <A>(a: A): A => structuredClone(a)

/** Environment variable names that carry a secret (and must never hold a literal value). */
const secretName = /(PASSWORD|SECRET|TOKEN|API_KEY|ENCRYPTION_KEY|DATABASE_URL|PASSPHRASE)$/
const serverVersion = JSON.parse(read(path.join(root, "packages/server/package.json"))).version as string
const agentVersion = JSON.parse(read(path.join(root, "packages/agent/package.json"))).version as string
/** An example env file's secret is empty, or a database URL whose password is empty or a placeholder. */
const holdsNoSecret = (value: string) =>
  value === "" || (/^postgres(ql)?:\/\//.test(value) && /^(|REPLACE_WITH_\w+)$/.test(new URL(value).password))

// ---------------------------------------------------------------------------------------------
// Kubernetes

interface Doc {
  readonly file: string
  readonly label: string
  readonly obj: K8sObject
}

const k8sDir = deploy("kubernetes")
const kustomization = parse(read(path.join(k8sDir, "kustomization.yaml"))) as {
  resources: Array<string>
  namespace: string
  secretGenerator: Array<{ name: string; envs: Array<string> }>
}
// YAML 1.1, as Kubernetes' parser reads it (so 0400 is octal).
const docs: Array<Doc> = kustomization.resources.flatMap((file) =>
  parseAllDocuments(read(path.join(k8sDir, file)), { version: "1.1" }).map((d, i) => {
    if (d.errors.length > 0) throw new Error(`${file}[${i}]: ${d.errors.map((e) => e.message).join("; ")}`)
    const obj = d.toJS() as K8sObject
    return { file, label: `${file}[${i}] ${obj.kind}/${obj.metadata?.name}`, obj }
  })
)
const find = (kind: string, name: string): any => {
  const d = docs.find((x) => x.obj.kind === kind && x.obj.metadata.name === name)
  if (!d) throw new Error(`no ${kind}/${name} in deploy/kubernetes`)
  return d.obj
}
const workloads = docs.filter((d) => ["Deployment", "StatefulSet", "DaemonSet"].includes(d.obj.kind))
const podSpec = (w: any): any => w.spec.template.spec
const containersOf = (w: any): Array<any> => [...(podSpec(w).initContainers ?? []), ...podSpec(w).containers]
const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v)
const envOf = (c: any, name: string): any => (c.env ?? []).find((e: any) => e.name === name)
/** The init container that hands the agent's hostPath directories to uid 10001 runs as root. */
const rootInit = (w: any, c: any) => w.metadata.name === "certctl-agent" && c.name === "host-dirs"

describe("Kubernetes manifests (deploy/kubernetes)", () => {
  it("kustomization.yaml lists every manifest, and every generated Secret has an example file", () => {
    const files = fs.readdirSync(k8sDir).filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml")
    expect([...kustomization.resources].sort()).toEqual(files.sort())
    expect(kustomization.namespace).toBe("certctl")
    for (const g of kustomization.secretGenerator)
      for (const env of g.envs) expect(fs.existsSync(path.join(k8sDir, `${env}.example`)), env).toBe(true)
    expect(read(path.join(k8sDir, "secrets/.gitignore"))).toMatch(/^\*\.env$/m)
  })

  it("every object validates against the Kubernetes 1.33 schemas, with no unknown field", () => {
    expect(docs.length).toBeGreaterThanOrEqual(13)
    const errors = docs.flatMap((d) => schemaErrors(d.obj).map((e) => `${d.label}: ${e}`))
    expect(errors).toEqual([])
    expect(fieldErrors(docs)).toEqual([])
    for (const d of docs) if (d.obj.kind !== "Namespace") expect(d.obj.metadata.namespace, d.label).toBe("certctl")
  })

  it("the validators reject broken copies", () => {
    const server = find("Deployment", "certctl-server")
    const badReplicas = clone(server)
    badReplicas.spec.replicas = "three"
    expect(schemaErrors(badReplicas).join()).toMatch(/replicas must be integer/)
    const noName = clone(server)
    delete podSpec(noName).containers[0].name
    expect(schemaErrors(noName).join()).toMatch(/required property name/)
    const badPolicy = clone(server)
    podSpec(badPolicy).containers[0].imagePullPolicy = "Sometimes"
    expect(schemaErrors(badPolicy).join()).toMatch(/allowed values/)
    const typo = clone(server)
    const c = podSpec(typo).containers[0]
    c.readinesProbe = c.readinessProbe
    delete c.readinessProbe
    expect(schemaErrors(typo)).toEqual([]) // the official schemas alone let it through …
    expect(fieldErrors([{ label: "typo", obj: typo }]).join()).toMatch(/readinesProbe/) // … this does not
    expect(
      schemaErrors({ apiVersion: "extensions/v1beta1", kind: "Deployment", metadata: { name: "x" } })
    ).toHaveLength(1)
  })

  it("server: a 3-replica Deployment behind a Service on 8443, probed on /readyz and /healthz", () => {
    const server = find("Deployment", "certctl-server")
    expect(server.spec.replicas).toBe(3)
    const labels = server.spec.template.metadata.labels
    expect(matches(server.spec.selector.matchLabels, labels)).toBe(true)
    const [c] = podSpec(server).containers
    expect(c.image).toBe(`ghcr.io/certctl/certctl-server:${serverVersion}`)
    const port = c.ports.find((p: any) => p.containerPort === 8443)
    expect(port).toBeDefined()
    for (const [probe, p] of [
      ["readinessProbe", "/readyz"],
      ["livenessProbe", "/healthz"],
      ["startupProbe", "/healthz"]
    ] as const) {
      expect(c[probe]?.httpGet?.path, probe).toBe(p)
      expect([8443, port.name], probe).toContain(c[probe].httpGet.port)
    }
    const service = find("Service", "certctl-server")
    expect(matches(service.spec.selector, labels)).toBe(true)
    expect(service.spec.ports).toContainEqual(expect.objectContaining({ port: 8443, targetPort: port.name }))
    const cm = find("ConfigMap", "certctl-server-config")
    expect(cm.data.CERTCTL_LISTEN_ADDR).toBe("0.0.0.0:8443")
    expect(c.envFrom).toContainEqual({ configMapRef: { name: "certctl-server-config" } })
    for (const v of ["CERTCTL_DATABASE_URL", "CERTCTL_ENCRYPTION_KEY", "CERTCTL_ADMIN_API_KEY"])
      expect(envOf(c, v)?.valueFrom?.secretKeyRef?.name, v).toBe("certctl-server")
  })

  it("the PodDisruptionBudget keeps 2 server pods and selects only them", () => {
    const pdb = find("PodDisruptionBudget", "certctl-server")
    expect(pdb.spec.minAvailable).toBe(2)
    for (const w of workloads)
      expect(matches(pdb.spec.selector.matchLabels, (w.obj as any).spec.template.metadata.labels), w.label).toBe(
        w.obj.metadata.name === "certctl-server"
      )
  })

  it("PostgreSQL: a StatefulSet with a headless Service and a PVC template, marked replaceable", () => {
    const pg = find("StatefulSet", "certctl-postgres")
    const svc = find("Service", pg.spec.serviceName)
    expect(svc.spec.clusterIP).toBe("None")
    expect(matches(svc.spec.selector, pg.spec.template.metadata.labels)).toBe(true)
    expect(pg.spec.volumeClaimTemplates[0].spec.resources.requests.storage).toBeDefined()
    expect(envOf(podSpec(pg).containers[0], "POSTGRES_PASSWORD").valueFrom.secretKeyRef.name).toBe("certctl-postgres")
    expect(read(path.join(k8sDir, "postgres.yaml"))).toMatch(/managed .*PostgreSQL[\s\S]*database-url/)
    const np = find("NetworkPolicy", "certctl-postgres")
    expect(matches(np.spec.podSelector.matchLabels, pg.spec.template.metadata.labels)).toBe(true)
  })

  it("agent: a DaemonSet whose pods each enroll as their node, keeping the identity on a hostPath", () => {
    const ds = find("DaemonSet", "certctl-agent")
    const spec = podSpec(ds)
    const c = spec.containers.find((x: any) => x.name === "agent")
    expect(c.image).toBe(`ghcr.io/certctl/certctl-agent:${agentVersion}`)
    expect(envOf(c, "CERTCTL_AGENT_ID").valueFrom.fieldRef.fieldPath).toBe("spec.nodeName")
    expect(envOf(c, "NODE_NAME").valueFrom.fieldRef.fieldPath).toBe("spec.nodeName")
    expect(envOf(c, "CERTCTL_API_KEY")).toBeUndefined() // no shared key: each pod enrolls for its own
    expect(envOf(c, "CERTCTL_ENROLLMENT_TOKEN")).toBeUndefined()
    const mountOf = (file: string) =>
      c.volumeMounts.find((m: any) => file.startsWith(`${m.mountPath}/`) || file === m.mountPath)
    const volume = (name: string) => spec.volumes.find((v: any) => v.name === name)
    // The token file lies in a read-only mount of the enrollment Secret, under the right item path.
    const tokenFile: string = envOf(c, "CERTCTL_ENROLLMENT_TOKEN_FILE").value
    const tokenMount = mountOf(tokenFile)
    expect(tokenMount.readOnly).toBe(true)
    const secret = volume(tokenMount.name).secret
    expect(secret.secretName).toBe("certctl-agent-enrollment")
    expect(secret.items.map((i: any) => `${tokenMount.mountPath}/${i.path}`)).toContain(tokenFile)
    expect(secret.defaultMode).toBe(0o400)
    // The key directory is the node's /var/lib/certctl-agent.
    const keyDir: string = envOf(c, "CERTCTL_KEY_DIR").value
    expect(keyDir).toBe("/var/lib/certctl-agent")
    expect(volume(mountOf(keyDir).name).hostPath).toEqual({ path: "/var/lib/certctl-agent", type: "DirectoryOrCreate" })
    // Health on the pod address, probed by the kubelet.
    expect(envOf(c, "CERTCTL_HEALTH_LISTEN").value).toBe("0.0.0.0:9090")
    expect(c.livenessProbe.httpGet.path).toBe("/healthz")
    // The agent's config file comes read-only from the ConfigMap and is one the agent accepts.
    const configFile: string = envOf(c, "CERTCTL_AGENT_CONFIG").value
    const configMount = mountOf(configFile)
    expect(configMount.readOnly).toBe(true)
    const cm = find("ConfigMap", volume(configMount.name).configMap.name)
    const json = JSON.parse(cm.data[path.basename(configFile)])
    Schema.decodeUnknownSync(AgentConfig.AgentFileConfig, { onExcessProperty: "error" })(json)
    expect(Object.keys(json).filter((k) => /key|passphrase|token/.test(k))).toEqual([])
    // Each target override's directory is writable in the pod.
    for (const t of Object.values(json.targets ?? {}) as Array<{ directory?: string }>)
      if (t.directory) expect(mountOf(t.directory)?.readOnly, t.directory).not.toBe(true)
  })

  it("every container: requests and limits, non-root, read-only root, no capabilities, RuntimeDefault", () => {
    for (const w of workloads) {
      const pod = podSpec(w.obj)
      for (const c of containersOf(w.obj)) {
        const where = `${w.label} ${c.name}`
        for (const kind of ["requests", "limits"]) {
          expect(c.resources?.[kind]?.cpu, `${where} ${kind}.cpu`).toBeDefined()
          expect(c.resources?.[kind]?.memory, `${where} ${kind}.memory`).toBeDefined()
        }
        const sc = c.securityContext ?? {}
        expect(sc.allowPrivilegeEscalation, where).toBe(false)
        expect(sc.readOnlyRootFilesystem, where).toBe(true)
        expect(sc.capabilities?.drop, where).toEqual(["ALL"])
        expect((sc.seccompProfile ?? pod.securityContext?.seccompProfile)?.type, where).toBe("RuntimeDefault")
        if (rootInit(w.obj, c)) {
          // The one documented exception: chown/chmod of the host directories, nothing more.
          expect(sc.runAsUser).toBe(0)
          expect(sc.capabilities.add.sort()).toEqual(["CHOWN", "FOWNER"])
          expect(c.command[0]).toBe("node")
        } else {
          expect(sc.runAsNonRoot ?? pod.securityContext?.runAsNonRoot, where).toBe(true)
          expect(sc.capabilities?.add, where).toBeUndefined()
          if (c.image.startsWith("ghcr.io/certctl/")) expect(sc.runAsUser ?? pod.securityContext?.runAsUser).toBe(10001)
        }
      }
      // Main containers get a writable /tmp from an emptyDir.
      for (const c of pod.containers) {
        const tmp = c.volumeMounts.find((m: any) => m.mountPath === "/tmp")
        expect(pod.volumes.find((v: any) => v.name === tmp?.name)?.emptyDir, `${w.label} ${c.name} /tmp`).toBeDefined()
      }
    }
    expect(workloads.flatMap((w) => containersOf(w.obj).filter((c) => rootInit(w.obj, c)))).toHaveLength(1)
  })

  it("service accounts mount no API token", () => {
    for (const w of workloads) {
      const pod = podSpec(w.obj)
      expect(pod.automountServiceAccountToken, w.label).toBe(false)
      expect(find("ServiceAccount", pod.serviceAccountName).automountServiceAccountToken).toBe(false)
    }
  })

  it("no literal secret: no Secret object is committed, every secret env comes from a Secret", () => {
    expect(docs.filter((d) => d.obj.kind === "Secret")).toEqual([])
    const generated = new Map(
      kustomization.secretGenerator.map((g) => [
        g.name,
        new Set(g.envs.flatMap((e) => Object.keys(parseEnvFile(read(path.join(k8sDir, `${e}.example`))))))
      ])
    )
    generated.set("certctl-agent-enrollment", new Set(["token"])) // created by the admin (README step 4)
    for (const w of workloads)
      for (const c of containersOf(w.obj))
        for (const e of c.env ?? []) {
          const ref = e.valueFrom?.secretKeyRef
          if (ref) expect(generated.get(ref.name)?.has(ref.key), `${w.label} ${e.name}`).toBe(true)
          if (secretName.test(e.name)) expect(ref, `${w.label} ${e.name} must come from a Secret`).toBeDefined()
        }
    for (const d of docs.filter((x) => x.obj.kind === "ConfigMap"))
      for (const k of Object.keys((d.obj as any).data)) expect(secretName.test(k), `${d.label} ${k}`).toBe(false)
    for (const g of kustomization.secretGenerator)
      for (const e of g.envs)
        for (const [k, v] of Object.entries(parseEnvFile(read(path.join(k8sDir, `${e}.example`)))))
          if (secretName.test(k) || k.endsWith("-key") || k === "password")
            expect(holdsNoSecret(v), `${e}.example ${k} holds a value`).toBe(true)
  })
})

// ---------------------------------------------------------------------------------------------
// Compose

const composeFile = deploy("compose/docker-compose.yml")
const composeRaw = parse(read(composeFile)) as { services: Record<string, any>; volumes: Record<string, unknown> }
const envExample = parseEnvFile(read(deploy("compose/.env.example")))
const ciEnv = {
  ...envExample,
  POSTGRES_PASSWORD: "p",
  CERTCTL_ENCRYPTION_KEY: "e",
  CERTCTL_ADMIN_API_KEY: "a",
  CERTCTL_ENROLLMENT_TOKEN: "t"
}
const compose = interpolate(composeRaw, ciEnv) as typeof composeRaw

describe("Compose file (deploy/compose)", () => {
  it("validates against the Compose Specification schema once interpolated", () => {
    expect(composeSchemaErrors(compose)).toEqual([])
  })

  it("the validator rejects broken copies", () => {
    const unknownKey = clone(compose)
    unknownKey.services.postgres.restart_policy = "always"
    expect(composeSchemaErrors(unknownKey).join()).toMatch(/additional properties/)
    const badCondition = clone(compose)
    badCondition.services["certctl-agent"].depends_on["certctl-server"].condition = "service_ready"
    expect(composeSchemaErrors(badCondition).join()).toMatch(/allowed values/)
    const badDuration = clone(compose)
    badDuration.services.postgres.healthcheck.interval = "five seconds"
    expect(composeSchemaErrors(badDuration).join()).toMatch(/format/)
  })

  it("refuses to start without the required secrets, and .env.example lists every variable", () => {
    expect(() => interpolate(composeRaw, envExample)).toThrow(InterpolationError)
    for (const name of ["POSTGRES_PASSWORD", "CERTCTL_ENCRYPTION_KEY", "CERTCTL_ADMIN_API_KEY"])
      expect(() => interpolate(composeRaw, { ...ciEnv, [name]: "" }), name).toThrow(name)
    const documented = read(deploy("compose/.env.example"))
    for (const v of variables(composeRaw)) expect(documented, v).toMatch(new RegExp(`^#? ?${v}=`, "m"))
    for (const [k, v] of Object.entries(envExample)) if (secretName.test(k)) expect(holdsNoSecret(v), k).toBe(true)
    expect(read(deploy("compose/.gitignore"))).toMatch(/^\.env$/m)
  })

  it("no literal secret: every secret value is interpolated from the env file", () => {
    for (const [name, svc] of Object.entries(composeRaw.services)) {
      expect(svc.env_file, name).toBeUndefined() // only named variables reach a container
      for (const [k, v] of Object.entries(svc.environment ?? {})) {
        if (!secretName.test(k)) continue
        const literal = String(v).replace(/\$\{[^}]*\}/g, "")
        if (/^postgres(ql)?:\/\//.test(literal)) expect(new URL(literal).password, `${name} ${k}`).toBe("")
        else expect(literal, `${name} ${k}`).toBe("")
      }
    }
    expect(compose.services["certctl-server"].environment.CERTCTL_DATABASE_URL).toBe(
      "postgres://certctl:p@postgres:5432/certctl"
    )
  })

  it("the design's topology: server on 8443, postgres:15, one enrolled agent, pgadmin behind a profile", () => {
    const s = compose.services
    expect(Object.keys(s).sort()).toEqual(["certctl-agent", "certctl-server", "pgadmin", "postgres"])
    expect(s.pgadmin.profiles).toEqual(["pgadmin"])
    for (const n of ["postgres", "certctl-server", "certctl-agent"]) expect(s[n].profiles, n).toBeUndefined()
    expect(s.postgres.image).toBe("postgres:15")
    expect(s.postgres.volumes).toContain("pgdata:/var/lib/postgresql/data")
    expect(s["certctl-server"].ports).toContain("8443:8443")
    expect(s["certctl-server"].environment.CERTCTL_LISTEN_ADDR).toBe("0.0.0.0:8443")
    expect(s["certctl-server"].healthcheck.test.join(" ")).toContain("/readyz")
    expect(s["certctl-server"].depends_on).toEqual({ postgres: { condition: "service_healthy" } })
    expect(s["certctl-agent"].depends_on).toEqual({ "certctl-server": { condition: "service_healthy" } })
    expect(s.pgadmin.depends_on).toEqual({ postgres: { condition: "service_healthy" } })
    const agent = s["certctl-agent"]
    expect(agent.environment.CERTCTL_SERVER_URL).toBe("http://certctl-server:8443")
    expect(agent.environment.CERTCTL_ENROLLMENT_TOKEN).toBe("t")
    expect(agent.environment.CERTCTL_API_KEY).toBeUndefined()
    expect(agent.volumes).toContain(`agent-keys:${agent.environment.CERTCTL_KEY_DIR}`)
    expect(agent.healthcheck.test.join(" ")).toContain(
      `http://${agent.environment.CERTCTL_HEALTH_LISTEN}/healthz`.replace("0.0.0.0", "127.0.0.1")
    )
    for (const [n, svc] of Object.entries(s)) {
      expect(svc.restart, n).toBe("unless-stopped")
      for (const v of svc.volumes ?? []) expect(Object.keys(compose.volumes), `${n} ${v}`).toContain(v.split(":")[0])
      if (n !== "pgadmin") expect(svc.healthcheck?.test, n).toBeDefined()
    }
  })

  it("server and agent images are the root Dockerfile's `server` and `agent` targets", () => {
    const dockerfile = path.resolve(
      path.dirname(composeFile),
      compose.services["certctl-server"].build.context,
      "Dockerfile"
    )
    expect(dockerfile).toBe(path.join(root, "Dockerfile"))
    for (const [svc, target, version] of [
      ["certctl-server", "server", serverVersion],
      ["certctl-agent", "agent", agentVersion]
    ] as const) {
      const s = compose.services[svc]
      expect(s.build).toMatchObject({ context: "../..", dockerfile: "Dockerfile", target })
      expect(s.build.args.NODE_IMAGE).toBe("node:20-bookworm-slim")
      expect(s.image).toBe(`ghcr.io/certctl/certctl-${target}:${version}`)
      expect(s.read_only).toBe(true)
      expect(s.cap_drop).toEqual(["ALL"])
    }
    // The Dockerfile is another part of this change; once it is there its stages must match.
    if (fs.existsSync(dockerfile)) {
      const text = read(dockerfile)
      expect(text).toMatch(/^ARG NODE_IMAGE=node:20-bookworm-slim$/m)
      for (const target of ["server", "agent"]) expect(text).toMatch(new RegExp(`^FROM \\S+ AS ${target}$`, "mi"))
    }
  })
})

// ---------------------------------------------------------------------------------------------
// systemd

/** A unit file as key → values (a key may repeat); comments and sections flattened. */
const unit = (file: string): Map<string, Array<string>> => {
  const m = new Map<string, Array<string>>()
  for (const line of read(deploy("systemd", file)).split("\n")) {
    const t = line.trim()
    if (!t || t.startsWith("#") || t.startsWith(";") || t.startsWith("[")) continue
    const i = t.indexOf("=")
    m.set(t.slice(0, i), [...(m.get(t.slice(0, i)) ?? []), t.slice(i + 1)])
  }
  return m
}

describe("systemd units (deploy/systemd)", () => {
  const hardening: Record<string, string> = {
    NoNewPrivileges: "true",
    ProtectSystem: "strict",
    ProtectHome: "true",
    PrivateTmp: "true",
    PrivateDevices: "true",
    ProtectKernelTunables: "true",
    ProtectKernelModules: "true",
    ProtectControlGroups: "true",
    RestrictAddressFamilies: "AF_INET AF_INET6 AF_UNIX",
    LockPersonality: "true",
    CapabilityBoundingSet: "",
    AmbientCapabilities: "",
    StateDirectoryMode: "0700",
    UMask: "0077",
    KillSignal: "SIGTERM",
    Restart: "on-failure"
  }
  for (const [name, state, envFile] of [
    ["certctl-server", "certctl", "server"],
    ["certctl-agent", "certctl-agent", "agent"]
  ] as const) {
    it(`${name}.service is hardened and keeps its state in /var/lib/${state} at 0700`, () => {
      const u = unit(`${name}.service`)
      for (const [k, v] of Object.entries(hardening)) expect(u.get(k), k).toEqual([v])
      expect(u.get("StateDirectory")).toEqual([state])
      expect(u.get("User")).toEqual([name === "certctl-server" ? "certctl" : "certctl-agent"])
      expect(u.get("DynamicUser")).toBeUndefined()
      expect(u.get("ExecStart")).toEqual([`/usr/local/bin/${name}`])
      expect(u.get("EnvironmentFile")).toEqual([`/etc/certctl/${envFile}.env`])
      expect(u.get("TimeoutStopSec")?.[0]).toMatch(/^\d+s$/)
      // V8's JIT needs W+X memory: MemoryDenyWriteExecute would break Node.js.
      expect(u.get("MemoryDenyWriteExecute")).toBeUndefined()
      expect(u.get("WantedBy")).toEqual(["multi-user.target"])
      for (const [k, v] of Object.entries(parseEnvFile(read(deploy("systemd", `${envFile}.env.example`)))))
        if (secretName.test(k)) expect(holdsNoSecret(v), `${envFile}.env.example ${k}`).toBe(true)
    })
  }
})
