/**
 * Real BIND 9 (Debian package `bind9`) as an authoritative, dynamically updatable DNS server for
 * tests: one primary zone that accepts RFC 2136 updates signed with one TSIG key. Pebble's VA is
 * pointed at it (`pebble -dnsserver 127.0.0.1:<port>`), so names resolve (a wildcard A record
 * sends every name to 127.0.0.1 for http-01) and dns-01 TXT records are really looked up.
 *
 * Started as `named -g -c <tmp>/named.conf [-u bind]` (foreground, logs on stderr); the control
 * channel is disabled so several instances can run side by side.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { chownSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { hasBinary } from "./peers.js"

export const bind9Available = (): boolean => hasBinary("named") && hasBinary("dig")

export type TsigAlgorithm = "hmac-sha256" | "hmac-sha512"

export interface Bind9Options {
  readonly port: number
  /** Default `example.test`. */
  readonly zone?: string
  readonly keyName?: string
  readonly algorithm?: TsigAlgorithm
  /** Base64 TSIG secret; random 32 bytes when absent. */
  readonly secret?: string
  /** Extra zone-file lines (relative names are in the zone). */
  readonly records?: ReadonlyArray<string>
}

export interface Bind9 {
  readonly host: "127.0.0.1"
  readonly port: number
  /** `127.0.0.1:<port>`, for `pebble -dnsserver`. */
  readonly address: string
  readonly zone: string
  readonly tsig: { readonly name: string; readonly algorithm: TsigAlgorithm; readonly secret: string }
  /** TXT strings at `name`, asked with `dig` over TCP (independent of the code under test). */
  readonly txt: (name: string) => Promise<Array<string>>
  readonly logs: () => string
  readonly stop: () => Promise<void>
}

const bindUser = (): { uid: number; gid: number } | undefined => {
  if (process.getuid?.() !== 0) return undefined
  try {
    const uid = Number(execFileSync("id", ["-u", "bind"]).toString().trim())
    const gid = Number(execFileSync("id", ["-g", "bind"]).toString().trim())
    return { uid, gid }
  } catch {
    return undefined
  }
}

const dig = (port: number, name: string, type: string): Promise<string> =>
  new Promise((resolve, reject) =>
    execFile(
      "dig",
      ["@127.0.0.1", "-p", String(port), "+tcp", "+short", "+time=2", "+tries=1", name, type],
      (error, stdout) => (error ? reject(error) : resolve(stdout))
    )
  )

export const startBind9 = async (options: Bind9Options): Promise<Bind9> => {
  const zone = options.zone ?? "example.test"
  const keyName = options.keyName ?? "certctl-test-key"
  const algorithm = options.algorithm ?? "hmac-sha256"
  const secret = options.secret ?? randomBytes(32).toString("base64")
  const dir = mkdtempSync(join(tmpdir(), "certctl-bind9-"))
  const conf = `options {
  directory "${dir}";
  listen-on port ${options.port} { 127.0.0.1; };
  listen-on-v6 { none; };
  pid-file none;
  session-keyfile none;
  managed-keys-directory "${dir}";
  recursion no;
  dnssec-validation no;
  notify no;
};
controls { };
key "${keyName}" { algorithm ${algorithm}; secret "${secret}"; };
zone "${zone}" {
  type primary;
  file "${zone}.zone";
  allow-update { key "${keyName}"; };
};
`
  const zoneFile = [
    "$TTL 60",
    `@ IN SOA ns.${zone}. hostmaster.${zone}. 1 60 60 600 60`,
    `@ IN NS ns.${zone}.`,
    "ns IN A 127.0.0.1",
    "@ IN A 127.0.0.1",
    "* IN A 127.0.0.1",
    ...(options.records ?? []),
    ""
  ].join("\n")
  writeFileSync(join(dir, "named.conf"), conf)
  writeFileSync(join(dir, `${zone}.zone`), zoneFile)
  const user = bindUser()
  if (user) {
    // named drops to `bind` and must write its journal beside the zone.
    for (const f of ["", "named.conf", `${zone}.zone`]) chownSync(join(dir, f), user.uid, user.gid)
  }
  const args = ["-g", "-c", join(dir, "named.conf"), ...(user ? ["-u", "bind"] : [])]
  const child: ChildProcess = spawn("named", args, { stdio: ["ignore", "pipe", "pipe"] })
  const lines: Array<string> = []
  const keep = (chunk: Buffer) => {
    lines.push(...chunk.toString("utf8").split("\n").filter(Boolean))
    if (lines.length > 200) lines.splice(0, lines.length - 200)
  }
  child.stdout?.on("data", keep)
  child.stderr?.on("data", keep)
  let exited: number | null | undefined
  const exit = new Promise<void>((resolve) =>
    child.once("exit", (code) => {
      exited = code
      resolve()
    })
  )
  const stop = async () => {
    if (exited === undefined) {
      child.kill("SIGTERM")
      await Promise.race([exit, new Promise((r) => setTimeout(r, 3000))])
      if (exited === undefined) child.kill("SIGKILL")
    }
    rmSync(dir, { recursive: true, force: true })
  }

  const deadline = Date.now() + 15_000
  for (;;) {
    if (exited !== undefined) {
      await stop()
      throw new Error(`named exited (${exited}) before answering:\n${lines.slice(-20).join("\n")}`)
    }
    const soa = await dig(options.port, zone, "SOA").catch(() => "")
    if (soa.trim() !== "") break
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`named did not answer for ${zone} on port ${options.port}:\n${lines.slice(-20).join("\n")}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }

  return {
    host: "127.0.0.1",
    port: options.port,
    address: `127.0.0.1:${options.port}`,
    zone,
    tsig: { name: keyName, algorithm, secret },
    txt: async (name) =>
      (await dig(options.port, name, "TXT"))
        .split("\n")
        .map((l) => l.trim())
        .filter(Boolean)
        .map((l) => l.replace(/^"|"$/g, "")),
    logs: () => lines.slice(-40).join("\n"),
    stop
  }
}
