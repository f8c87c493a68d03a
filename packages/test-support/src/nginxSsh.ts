/**
 * Real-peer harness for the `nginx` target: a real OpenSSH sshd (run as root, so it can
 * setuid to the deploy user) and a real nginx (run AS the unprivileged deploy user, with its own
 * prefix), both on 127.0.0.1 high ports. Everything per run lives in a temp dir plus one
 * per-run authorized_keys file in the deploy user's ~/.ssh; stop() removes both.
 */
import "reflect-metadata" // @peculiar/x509 (tsyringe) needs the Reflect polyfill
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { randomBytes, webcrypto } from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import * as x509 from "@peculiar/x509"
import { hasBinary } from "./peers.js"

export const DEPLOY_USER = "certctl-deploy"
const SSHD = "/usr/sbin/sshd"
const PORT_RANGE: readonly [number, number] = [20100, 20199]

export interface SelfSigned {
  readonly certPem: string
  readonly keyPem: string
  /** Lowercase hex, no leading zeros (as the TLS probe reports it). */
  readonly serial: string
}

/** A self-signed ECDSA P-256 leaf for `domain`, with a random serial. */
export const selfSignedCertificate = async (domain: string): Promise<SelfSigned> => {
  x509.cryptoProvider.set(webcrypto as any)
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" }
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair
  const serialBytes = randomBytes(12)
  serialBytes[0] = (serialBytes[0] & 0x7f) | 0x10 // positive, no leading zero byte
  const now = Date.now()
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialBytes.toString("hex"),
    name: `CN=${domain}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 7 * 86_400_000),
    keys: keys as any,
    signingAlgorithm: alg,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: domain }])]
  })
  const pkcs8 = await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)
  const keyPem = x509.PemConverter.encode(pkcs8, "PRIVATE KEY")
  return { certPem: cert.toString("pem") + "\n", keyPem: keyPem + "\n", serial: normalize(cert.serialNumber) }
}

const normalize = (hex: string) => hex.toLowerCase().replace(/^0+(?=.)/, "")

/** Can this machine run the harness? (root for sshd + user creation, and the Debian binaries.) */
export const nginxSshAvailable = (): { ok: boolean; why: string } => {
  if (process.platform !== "linux") return { ok: false, why: "needs Linux" }
  if (process.geteuid?.() !== 0) return { ok: false, why: "sshd must run as root to switch to the deploy user" }
  if (!fs.existsSync(SSHD)) return { ok: false, why: `${SSHD} missing (apt-get install openssh-server)` }
  for (const bin of ["nginx", "ssh-keygen", "useradd", "usermod", "getent"])
    if (!hasBinary(bin)) return { ok: false, why: `${bin} not on PATH (apt-get install nginx openssh-server passwd)` }
  return { ok: true, why: "" }
}

export interface NginxSsh {
  readonly host: string
  readonly sshPort: number
  readonly httpsPort: number
  readonly user: string
  /** OpenSSH-format ed25519 private key authorised for `user` (this run only). */
  readonly privateKey: string
  /** "SHA256:…" fingerprint of this run's sshd host key. */
  readonly hostKeySha256: string
  /** Directory nginx reads certificates from (owned by the deploy user). */
  readonly certPath: string
  readonly prefix: string
  readonly confPath: string
  /** Included inside `http {}`; tests write directives here (e.g. a syntax error). */
  readonly extraConfPath: string
  readonly testCommand: string
  readonly reloadCommand: string
  readonly domains: ReadonlyArray<string>
  /** The bootstrap certificate nginx started with, per domain. */
  readonly bootstrap: Readonly<Record<string, SelfSigned>>
  /** Path (under /) of a large static file, for a response that stays in flight. */
  readonly bigFile: { readonly urlPath: string; readonly size: number }
  readonly stop: () => Promise<void>
}

export interface NginxSshOptions {
  readonly domains?: ReadonlyArray<string>
}

/** Create the deploy user if missing; its password field must be `*` (sshd refuses `!`-locked accounts). */
export const ensureDeployUser = (user: string = DEPLOY_USER): { uid: number; gid: number; home: string } => {
  const lookup = () => {
    try {
      return execFileSync("getent", ["passwd", user], { encoding: "utf8" }).trim()
    } catch {
      return ""
    }
  }
  if (lookup() === "") {
    try {
      execFileSync("useradd", ["--create-home", "--user-group", "--shell", "/bin/sh", user], { stdio: "pipe" })
    } catch (err: any) {
      if (err?.status !== 9) throw err // 9: exists (a parallel run created it)
    }
  }
  const shadow = execFileSync("getent", ["shadow", user], { encoding: "utf8" }).split(":")
  if (shadow[1] !== "*") execFileSync("usermod", ["-p", "*", user])
  const [, , uid, gid, , home] = lookup().split(":")
  if (!fs.existsSync(home)) {
    fs.mkdirSync(home, { recursive: true, mode: 0o755 })
    fs.chownSync(home, Number(uid), Number(gid))
  }
  return { uid: Number(uid), gid: Number(gid), home }
}

const portFree = (port: number) =>
  new Promise<boolean>((resolve) => {
    const srv = net.createServer()
    srv.once("error", () => resolve(false))
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)))
  })

const pickPorts = async (count: number): Promise<number[]> => {
  const [lo, hi] = PORT_RANGE
  const span = hi - lo + 1
  const start = Math.floor(Math.random() * span)
  const out: number[] = []
  for (let i = 0; i < span && out.length < count; i++) {
    const port = lo + ((start + i) % span)
    if (await portFree(port)) out.push(port)
  }
  if (out.length < count) throw new Error(`no free ports in ${lo}-${hi}`)
  return out
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Resolve once `port` accepts TCP and (for sshd) sends its banner; fail early if the child died. */
const waitListening = async (name: string, port: number, child: ChildProcess, log: () => string, banner?: string) => {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}): ${log()}`)
    const ok = await new Promise<boolean>((resolve) => {
      const sock = net.connect(port, "127.0.0.1")
      const done = (value: boolean) => {
        sock.destroy()
        resolve(value)
      }
      sock.setTimeout(1000, () => done(false))
      sock.once("error", () => done(false))
      sock.once("connect", () => {
        if (!banner) return done(true)
        sock.once("data", (d) => done(d.toString().startsWith(banner)))
      })
    })
    if (ok) return
    await sleep(50)
  }
  throw new Error(`${name} did not listen on 127.0.0.1:${port}: ${log()}`)
}

const collect = (child: ChildProcess) => {
  let out = ""
  const add = (d: Buffer) => {
    out = (out + d.toString()).slice(-8000)
  }
  child.stdout?.on("data", add)
  child.stderr?.on("data", add)
  return () => out
}

const stopChild = async (child: ChildProcess, signal: NodeJS.Signals) => {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((r) => child.once("exit", () => r()))
  child.kill(signal)
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000)
  await exited
  clearTimeout(timer)
}

const nginxConf = (o: {
  prefix: string
  certPath: string
  httpsPort: number
  domains: ReadonlyArray<string>
  extraConfPath: string
}) => `# generated by certctl test-support (nginxSsh.ts)
daemon off;
master_process on;
worker_processes 1;
pid ${o.prefix}/nginx.pid;
error_log ${o.prefix}/logs/error.log notice;
events { worker_connections 128; }
http {
  access_log off;
  client_body_temp_path ${o.prefix}/temp/client_body;
  proxy_temp_path ${o.prefix}/temp/proxy;
  fastcgi_temp_path ${o.prefix}/temp/fastcgi;
  uwsgi_temp_path ${o.prefix}/temp/uwsgi;
  scgi_temp_path ${o.prefix}/temp/scgi;
  keepalive_timeout 300s;
  keepalive_requests 10000;
  default_type application/octet-stream;
  include ${o.extraConfPath};
${o.domains
  .map(
    (d, i) => `  server {
    listen 127.0.0.1:${o.httpsPort} ssl${i === 0 ? " default_server" : ""};
    server_name ${d};
    ssl_certificate ${o.certPath}/${d}.crt;
    ssl_certificate_key ${o.certPath}/${d}.key;
    root ${o.prefix}/html;
    location = / { return 200 "ok ${d}\\n"; }
  }`
  )
  .join("\n")}
}
`

/** Start sshd + nginx for one test file. Requires nginxSshAvailable().ok. */
export const startNginxSsh = async (options: NginxSshOptions = {}): Promise<NginxSsh> => {
  const domains = options.domains ?? ["app.certctl.test"]
  const user = DEPLOY_USER
  const account = ensureDeployUser(user)
  const runId = randomBytes(6).toString("hex")
  const base = fs.mkdtempSync(path.join(os.tmpdir(), "certctl-nginx-"))
  const sshdDir = path.join(base, "sshd") // root-only: host key, config
  const prefix = path.join(base, "nginx")
  const certPath = path.join(base, "certs")
  const sshDir = path.join(account.home, ".ssh")
  const authorizedKeys = path.join(sshDir, `authorized_keys.certctl-${runId}`)
  const children: ChildProcess[] = []

  // If the test process dies without stop(), do not leave sshd/nginx running.
  const killOnExit = () => {
    for (const child of children) child.kill("SIGKILL")
  }
  process.once("exit", killOnExit)
  const cleanup = async () => {
    process.removeListener("exit", killOnExit)
    for (const child of children.reverse()) await stopChild(child, "SIGTERM")
    fs.rmSync(authorizedKeys, { force: true })
    fs.rmSync(base, { recursive: true, force: true })
  }

  try {
    fs.chmodSync(base, 0o755)
    fs.mkdirSync(sshdDir, { mode: 0o700 })
    fs.mkdirSync("/run/sshd", { recursive: true, mode: 0o755 }) // sshd's privilege-separation dir
    for (const dir of [prefix, certPath, ...["conf", "logs", "html", "temp"].map((d) => path.join(prefix, d))]) {
      fs.mkdirSync(dir, { recursive: true, mode: 0o755 })
      fs.chownSync(dir, account.uid, account.gid)
    }
    fs.chmodSync(certPath, 0o700)

    // Per-run keys: sshd host key (root) and the deploy user's client key.
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "certctl-host", "-f", `${sshdDir}/host_ed25519`])
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `certctl-${runId}`, "-f", `${sshdDir}/client`])
    const hostKeySha256 = execFileSync("ssh-keygen", ["-l", "-E", "sha256", "-f", `${sshdDir}/host_ed25519.pub`], {
      encoding: "utf8"
    }).split(" ")[1]
    const privateKey = fs.readFileSync(`${sshdDir}/client`, "utf8")
    fs.mkdirSync(sshDir, { recursive: true, mode: 0o700 })
    fs.chownSync(sshDir, account.uid, account.gid)
    fs.writeFileSync(authorizedKeys, fs.readFileSync(`${sshdDir}/client.pub`), { mode: 0o600 })
    fs.chownSync(authorizedKeys, account.uid, account.gid)

    const [sshPort, httpsPort] = await pickPorts(2)
    const sshdConfig = path.join(sshdDir, "sshd_config")
    fs.writeFileSync(
      sshdConfig,
      [
        `ListenAddress 127.0.0.1`,
        `HostKey ${sshdDir}/host_ed25519`,
        `PidFile ${sshdDir}/sshd.pid`,
        "UsePAM no",
        "StrictModes yes",
        "PermitRootLogin no",
        `AllowUsers ${user}`,
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        `AuthorizedKeysFile .ssh/authorized_keys.certctl-${runId}`,
        "Subsystem sftp internal-sftp",
        "LogLevel VERBOSE",
        ""
      ].join("\n")
    )

    const bootstrap: Record<string, SelfSigned> = {}
    for (const domain of domains) {
      const cert = await selfSignedCertificate(domain)
      bootstrap[domain] = cert
      fs.writeFileSync(path.join(certPath, `${domain}.crt`), cert.certPem, { mode: 0o644 })
      fs.writeFileSync(path.join(certPath, `${domain}.key`), cert.keyPem, { mode: 0o600 })
      for (const ext of ["crt", "key"]) fs.chownSync(path.join(certPath, `${domain}.${ext}`), account.uid, account.gid)
    }
    const bigFile = { urlPath: "/big.bin", size: 64 * 1024 * 1024 }
    const bigPath = path.join(prefix, "html", "big.bin")
    fs.closeSync(fs.openSync(bigPath, "w", 0o644))
    fs.truncateSync(bigPath, bigFile.size) // sparse: no disk cost

    const confPath = path.join(prefix, "conf", "nginx.conf")
    const extraConfPath = path.join(prefix, "conf", "extra.conf")
    fs.writeFileSync(extraConfPath, "")
    fs.writeFileSync(confPath, nginxConf({ prefix, certPath, httpsPort, domains, extraConfPath }))
    for (const f of [confPath, extraConfPath]) fs.chownSync(f, account.uid, account.gid)

    const nginxBin = execFileSync("sh", ["-c", "command -v nginx"], { encoding: "utf8" }).trim()
    const nginxArgs = `-p ${prefix}/ -c ${confPath} -e ${prefix}/logs/error.log`
    const env = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: account.home, USER: user, LOGNAME: user }

    const sshd = spawn(SSHD, ["-D", "-e", "-f", sshdConfig, "-p", String(sshPort)], {
      stdio: ["ignore", "pipe", "pipe"]
    })
    children.push(sshd)
    const sshdLog = collect(sshd)
    await waitListening("sshd", sshPort, sshd, sshdLog, "SSH-2.0-")

    // nginx runs as the deploy user (libuv drops supplementary groups), exactly as it would via ssh.
    const nginx = spawn(nginxBin, nginxArgs.split(" "), {
      uid: account.uid,
      gid: account.gid,
      cwd: prefix,
      env,
      stdio: ["ignore", "pipe", "pipe"]
    })
    children.push(nginx)
    const nginxLog = collect(nginx)
    await waitListening("nginx", httpsPort, nginx, () => nginxLog() + readTail(path.join(prefix, "logs/error.log")))

    return {
      host: "127.0.0.1",
      sshPort,
      httpsPort,
      user,
      privateKey,
      hostKeySha256,
      certPath,
      prefix,
      confPath,
      extraConfPath,
      testCommand: `${nginxBin} ${nginxArgs} -t`,
      reloadCommand: `${nginxBin} ${nginxArgs} -s reload`,
      domains,
      bootstrap,
      bigFile,
      stop: cleanup
    }
  } catch (err) {
    await cleanup()
    throw err
  }
}

const readTail = (file: string) => {
  try {
    return fs.readFileSync(file, "utf8").slice(-4000)
  } catch {
    return ""
  }
}
