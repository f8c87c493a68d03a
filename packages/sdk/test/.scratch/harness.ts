import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { freshDatabase } from "@certctl/test-support"

// TEMPORARY scratch harness for manual verification only (deleted before the report).
export const startServer = async () => {
  const db = await freshDatabase()
  const port = 47800 + Math.floor(Math.random() * 100)
  const adminKey = randomBytes(24).toString("hex")
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "sdk-srv-"))
  const child = spawn(process.execPath, ["--import", "tsx", "--conditions=source", "packages/server/src/bin.ts"], {
    cwd: "/work/main",
    env: {
      ...process.env,
      CERTCTL_DATABASE_URL: db.url,
      CERTCTL_ENCRYPTION_KEY: randomBytes(32).toString("base64"),
      CERTCTL_ADMIN_API_KEY: adminKey,
      CERTCTL_LISTEN_ADDR: `127.0.0.1:${port}`,
      CERTCTL_DATA_DIR: dataDir,
      CERTCTL_LOG_LEVEL: "warn"
    },
    stdio: ["ignore", "inherit", "inherit"]
  })
  const url = `http://127.0.0.1:${port}`
  for (let i = 0; i < 300; i++) {
    try {
      const r = await fetch(`${url}/healthz`)
      if (r.ok) break
    } catch {}
    await new Promise((r) => setTimeout(r, 100))
  }
  return {
    url,
    adminKey,
    stop: async () => {
      child.kill("SIGTERM")
      await new Promise((r) => child.once("exit", r))
      await db.drop()
    }
  }
}
