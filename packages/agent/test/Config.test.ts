import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { ConfigProvider, Effect, Exit, Redacted } from "effect"
import { describe, expect, it } from "vitest"
import { selfSignedCertificate } from "@certctl/test-support/f5Simulator"
import { defaultAgentId, load } from "../src/Config.js"

/** The agent's settings as Effect Config: defaults, validation naming the setting, the JSON file. */

const run = (env: Record<string, string>) =>
  Effect.runSyncExit(load.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))))

const ok = (env: Record<string, string>) => {
  const exit = run(env)
  if (Exit.isFailure(exit)) throw new Error(`expected settings, got ${String(exit.cause)}`)
  return exit.value
}

/** The failure's text: a ConfigError prints as `(Invalid data at NAME: "why")`. */
const failure = (env: Record<string, string>) => {
  const exit = run(env)
  if (Exit.isSuccess(exit)) throw new Error("expected a ConfigError")
  return String(exit.cause)
}

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "certctl-agent-config-"))

const writeJson = (value: unknown) => {
  const file = path.join(tmp(), "agent.json")
  fs.writeFileSync(file, JSON.stringify(value))
  return file
}

describe("agent Config", () => {
  it("reads CERTCTL_KEY_ROTATION as seconds (default 30 days, off = 0) and names it when it is bad", () => {
    expect(ok({}).keyRotationSeconds).toBe(30 * 86_400)
    expect(ok({ CERTCTL_KEY_ROTATION: "12h" }).keyRotationSeconds).toBe(12 * 3600)
    expect(ok({ CERTCTL_KEY_ROTATION: "90m" }).keyRotationSeconds).toBe(5400)
    expect(ok({ CERTCTL_KEY_ROTATION: "off" }).keyRotationSeconds).toBe(0)
    expect(ok({ CERTCTL_AGENT_CONFIG: writeJson({ key_rotation: "7d" }) }).keyRotationSeconds).toBe(7 * 86_400)
    for (const bad of ["30", "1w", "-1d", "1.5h", "d"])
      expect(failure({ CERTCTL_KEY_ROTATION: bad })).toMatch(/CERTCTL_KEY_ROTATION/)
  })

  it("reads CERTCTL_AGENT_DRIFT_INTERVAL as seconds (default 900, 0 = off) and names it when it is bad", () => {
    expect(ok({}).driftIntervalSeconds).toBe(900)
    expect(ok({ CERTCTL_AGENT_DRIFT_INTERVAL: "30" }).driftIntervalSeconds).toBe(30)
    expect(ok({ CERTCTL_AGENT_DRIFT_INTERVAL: "0" }).driftIntervalSeconds).toBe(0)
    expect(ok({ CERTCTL_AGENT_CONFIG: writeJson({ drift_interval: 120 }) }).driftIntervalSeconds).toBe(120)
    expect(failure({ CERTCTL_AGENT_DRIFT_INTERVAL: "15m" })).toMatch(
      /CERTCTL_AGENT_DRIFT_INTERVAL: "must be an integer from 0 to 604800, got "15m""/
    )
    for (const bad of ["-1", "1.5", "604801", "abc"])
      expect(failure({ CERTCTL_AGENT_DRIFT_INTERVAL: bad })).toMatch(/CERTCTL_AGENT_DRIFT_INTERVAL/)
    expect(failure({ CERTCTL_AGENT_CONFIG: writeJson({ drift_interval: -5 }) })).toMatch(/drift_interval/)
  })

  it("has the documented defaults", () => {
    const s = ok({})
    expect(s).toMatchObject({
      serverUrl: "http://127.0.0.1:8443",
      keyDir: "./.certctl/keys",
      pollWaitSeconds: 25,
      heartbeatSeconds: 60,
      agentId: defaultAgentId(),
      agentIdExplicit: false,
      targets: {}
    })
    expect(s.apiKey).toBeUndefined()
    expect(s.enrollmentToken).toBeUndefined()
    expect(s.keyPassphrase).toBeUndefined()
    expect(s.healthListen).toBeUndefined()
    expect(s.http01).toBeUndefined()
  })

  it("reads every variable, keeping secrets redacted", () => {
    const s = ok({
      CERTCTL_SERVER_URL: "https://cp.example.test:8443/",
      CERTCTL_API_KEY: "cct_key",
      CERTCTL_AGENT_ID: "web-1",
      CERTCTL_KEY_DIR: "/var/lib/certctl-agent",
      CERTCTL_KEY_PASSPHRASE: "pass",
      CERTCTL_POLL_WAIT_SECONDS: "10",
      CERTCTL_HEARTBEAT_SECONDS: "2.5",
      CERTCTL_HEALTH_LISTEN: "127.0.0.1:0",
      CERTCTL_HTTP01_LISTEN: ":80"
    })
    expect(s).toMatchObject({
      serverUrl: "https://cp.example.test:8443",
      agentId: "web-1",
      agentIdExplicit: true,
      keyDir: "/var/lib/certctl-agent",
      pollWaitSeconds: 10,
      heartbeatSeconds: 2.5,
      healthListen: "127.0.0.1:0",
      http01: { listen: ":80" }
    })
    expect(s.apiKey && Redacted.value(s.apiKey)).toBe("cct_key")
    expect(s.keyPassphrase && Redacted.value(s.keyPassphrase)).toBe("pass")
    expect(JSON.stringify(s)).not.toMatch(/cct_key|"pass"/)
    expect(ok({ CERTCTL_HTTP01_WEBROOT: "/srv/www" }).http01).toEqual({ webroot: "/srv/www" })
  })

  it("counts empty variables as unset", () => {
    const s = ok({
      CERTCTL_API_KEY: "",
      CERTCTL_AGENT_ID: "",
      CERTCTL_HEALTH_LISTEN: "",
      CERTCTL_POLL_WAIT_SECONDS: ""
    })
    expect(s).toMatchObject({ agentIdExplicit: false, pollWaitSeconds: 25 })
    expect(s.apiKey).toBeUndefined()
    expect(s.healthListen).toBeUndefined()
  })

  it("refuses bad values with an error naming the setting", () => {
    expect(failure({ CERTCTL_SERVER_URL: "not a url" })).toMatch(/CERTCTL_SERVER_URL: ""not a url" is not a URL"/)
    expect(failure({ CERTCTL_SERVER_URL: "ftp://x" })).toMatch(/CERTCTL_SERVER_URL: .*not an http\(s\) URL/)
    expect(failure({ CERTCTL_POLL_WAIT_SECONDS: "abc" })).toMatch(
      /CERTCTL_POLL_WAIT_SECONDS: "must be an integer from 0 to 60, got "abc""/
    )
    expect(failure({ CERTCTL_POLL_WAIT_SECONDS: "61" })).toMatch(/CERTCTL_POLL_WAIT_SECONDS/)
    expect(failure({ CERTCTL_HEARTBEAT_SECONDS: "0" })).toMatch(/CERTCTL_HEARTBEAT_SECONDS: "must be a number from 1/)
    expect(failure({ CERTCTL_HEALTH_LISTEN: "9090" })).toMatch(/CERTCTL_HEALTH_LISTEN: "must be host:port/)
    expect(failure({ CERTCTL_HTTP01_LISTEN: "0.0.0.0" })).toMatch(/CERTCTL_HTTP01_LISTEN: "must be host:port/)
    expect(failure({ CERTCTL_API_KEY: "cct_x" })).toMatch(/CERTCTL_AGENT_ID: "is required with CERTCTL_API_KEY/)
    expect(failure({ CERTCTL_AGENT_ID: "-bad" })).toMatch(/CERTCTL_AGENT_ID: "agent id "-bad" must be/)
    expect(failure({ CERTCTL_ENROLLMENT_TOKEN_FILE: "/nonexistent/token" })).toMatch(
      /CERTCTL_ENROLLMENT_TOKEN_FILE: "\/nonexistent\/token: ENOENT/
    )
  })

  it("reads the enrollment token from the variable or its file, trimmed", () => {
    const file = path.join(tmp(), "token")
    fs.writeFileSync(file, "cce_fromfile\n")
    const fromFile = ok({ CERTCTL_ENROLLMENT_TOKEN_FILE: file }).enrollmentToken
    expect(fromFile && Redacted.value(fromFile)).toBe("cce_fromfile")
    const fromEnv = ok({ CERTCTL_ENROLLMENT_TOKEN: " cce_env ", CERTCTL_ENROLLMENT_TOKEN_FILE: file }).enrollmentToken
    expect(fromEnv && Redacted.value(fromEnv)).toBe("cce_env")
  })

  it("refuses plain http to a control plane off this host unless CERTCTL_ALLOW_INSECURE_HTTP allows it", () => {
    for (const url of ["http://control-plane:8443", "http://10.0.0.5:8443", "http://[2001:db8::1]:8443"]) {
      expect(failure({ CERTCTL_SERVER_URL: url })).toMatch(
        /Invalid data at CERTCTL_SERVER_URL: .*is plain http to a host that is not this one.*CERTCTL_ALLOW_INSECURE_HTTP=1/
      )
      expect(ok({ CERTCTL_SERVER_URL: url, CERTCTL_ALLOW_INSECURE_HTTP: "1" }).serverUrl).toBe(url)
      expect(ok({ CERTCTL_SERVER_URL: url, CERTCTL_ALLOW_INSECURE_HTTP: "true" }).serverUrl).toBe(url)
      expect(failure({ CERTCTL_SERVER_URL: url, CERTCTL_ALLOW_INSECURE_HTTP: "0" })).toMatch(/plain http/)
    }
    for (const url of ["http://127.0.0.1:8443", "http://localhost:8443", "http://[::1]:8443", "http://127.8.9.10"])
      expect(ok({ CERTCTL_SERVER_URL: url }).serverUrl).toBe(url)
    expect(ok({ CERTCTL_SERVER_URL: "https://control-plane:8443" }).serverUrl).toBe("https://control-plane:8443")
    expect(failure({ CERTCTL_ALLOW_INSECURE_HTTP: "yes please" })).toMatch(
      /CERTCTL_ALLOW_INSECURE_HTTP: .*must be 1, true, 0 or false/
    )
  })

  it("takes settings and per-target overrides from the JSON file, the environment winning", () => {
    const file = writeJson({
      server_url: "http://file.example.test:8443",
      allow_insecure_http: true,
      agent_id: "from-file",
      api_key: "cct_file",
      key_dir: "/srv/keys",
      poll_wait_seconds: 5,
      heartbeat_seconds: 30,
      health_listen: "127.0.0.1:9099",
      http01: { webroot: "/srv/www" },
      targets: { "web-files": { directory: "/etc/ssl/local" } }
    })
    const s = ok({ CERTCTL_AGENT_CONFIG: file, CERTCTL_POLL_WAIT_SECONDS: "7" })
    expect(s).toMatchObject({
      serverUrl: "http://file.example.test:8443",
      agentId: "from-file",
      agentIdExplicit: true,
      keyDir: "/srv/keys",
      pollWaitSeconds: 7,
      heartbeatSeconds: 30,
      healthListen: "127.0.0.1:9099",
      http01: { webroot: "/srv/www" },
      targets: { "web-files": { directory: "/etc/ssl/local" } }
    })
    expect(s.apiKey && Redacted.value(s.apiKey)).toBe("cct_file")
    expect(ok({ CERTCTL_AGENT_CONFIG: file, CERTCTL_HTTP01_LISTEN: "127.0.0.1:0" }).http01).toEqual({
      listen: "127.0.0.1:0"
    })
  })

  it("refuses a file that is missing, not JSON, or has unknown or bad keys, naming CERTCTL_AGENT_CONFIG", () => {
    expect(failure({ CERTCTL_AGENT_CONFIG: "/nonexistent/agent.json" })).toMatch(/CERTCTL_AGENT_CONFIG: .*ENOENT/)
    const notJson = path.join(tmp(), "agent.json")
    fs.writeFileSync(notJson, "{ nope")
    expect(failure({ CERTCTL_AGENT_CONFIG: notJson })).toMatch(/CERTCTL_AGENT_CONFIG: .*JSON/)
    expect(failure({ CERTCTL_AGENT_CONFIG: writeJson({ server_ulr: "http://x" }) })).toMatch(
      /CERTCTL_AGENT_CONFIG: .*is invalid.*server_ulr/s
    )
    expect(failure({ CERTCTL_AGENT_CONFIG: writeJson({ poll_wait_seconds: 600 }) })).toMatch(
      /CERTCTL_AGENT_CONFIG: .*poll_wait_seconds/s
    )
    // A file value is validated like the variable it stands for.
    expect(failure({ CERTCTL_AGENT_CONFIG: writeJson({ health_listen: "nope" }) })).toMatch(
      /CERTCTL_HEALTH_LISTEN: "must be host:port, got "nope""/
    )
  })

  it("reads the client certificate settings (CERTCTL_AGENT_CLIENT_CERT, _RENEW_BEFORE, CERTCTL_SERVER_CA_FILE) and names a bad one", async () => {
    const https = { CERTCTL_SERVER_URL: "https://cp.example:8443" }
    expect(ok({})).toMatchObject({ clientCert: "off", clientCertRenewBeforeSeconds: 10 * 86_400 })
    expect(ok({ ...https, CERTCTL_AGENT_CLIENT_CERT: "auto" }).clientCert).toBe("auto")
    expect(ok({ ...https, CERTCTL_CLIENT_CERT_RENEW_BEFORE: "36h" }).clientCertRenewBeforeSeconds).toBe(36 * 3600)
    expect(
      ok({ ...https, CERTCTL_AGENT_CONFIG: writeJson({ client_cert: "auto", client_cert_renew_before: "5d" }) })
    ).toMatchObject({ clientCert: "auto", clientCertRenewBeforeSeconds: 5 * 86_400 })
    expect(failure({ ...https, CERTCTL_AGENT_CLIENT_CERT: "yes" })).toMatch(
      /CERTCTL_AGENT_CLIENT_CERT: "must be auto or off/
    )
    // A client certificate is presented in a TLS handshake: plain http cannot carry it.
    expect(failure({ CERTCTL_AGENT_CLIENT_CERT: "auto" })).toMatch(/CERTCTL_AGENT_CLIENT_CERT: "auto needs an https/)
    // Renewing at or beyond the 30-day lifetime would renew without end.
    for (const bad of ["30d", "31d", "0s", "soon"])
      expect(failure({ ...https, CERTCTL_CLIENT_CERT_RENEW_BEFORE: bad })).toMatch(/CERTCTL_CLIENT_CERT_RENEW_BEFORE/)

    const dir = tmp()
    const ca = path.join(dir, "ca.pem")
    const certPem = (await selfSignedCertificate()).cert
    fs.writeFileSync(ca, certPem)
    expect(ok({ ...https, CERTCTL_SERVER_CA_FILE: ca }).serverCa).toBe(certPem)
    const withKey = path.join(dir, "key.pem")
    fs.writeFileSync(withKey, `${certPem}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n`)
    expect(failure({ ...https, CERTCTL_SERVER_CA_FILE: withKey })).toMatch(/CERTCTL_SERVER_CA_FILE: .*nothing else/)
    const garbage = path.join(dir, "garbage.pem")
    fs.writeFileSync(garbage, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    expect(failure({ ...https, CERTCTL_SERVER_CA_FILE: garbage })).toMatch(/CERTCTL_SERVER_CA_FILE: .*garbage\.pem/)
    expect(failure({ ...https, CERTCTL_SERVER_CA_FILE: path.join(dir, "missing.pem") })).toMatch(
      /CERTCTL_SERVER_CA_FILE: .*ENOENT/
    )
  })
})
