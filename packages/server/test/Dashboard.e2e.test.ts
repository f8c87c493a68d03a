import { execFileSync } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import { pgAvailable, repoRoot, requirePeer, tempDir } from "@certctl/test-support"
import { type BrowserContext, chromium, type Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createLocalCa, type Db, openDb } from "./e2eSupport.js"
import { type AgentHandle, api, type ServerHandle, startAgent, startServer } from "./harness.js"

/**
 * The dashboard in a real browser (Debian's Chromium driven by playwright-core) against a real
 * certctl-server on PostgreSQL with a real agent process. Screenshots of every page, at 1280 and
 * 390 px, light and dark, go to dashboard-screenshots/ at the repository root (git-ignored).
 */

const chromiumPath = process.env.CERTCTL_CHROMIUM ?? "/usr/bin/chromium"
const pg = await pgAvailable()
const run =
  requirePeer("postgresql", pg.ok, pg.why) &&
  requirePeer("chromium", fs.existsSync(chromiumPath), `${chromiumPath} not found (apt-get install chromium)`)

const serverDir = path.join(repoRoot, "packages/server")
const uiIndex = path.join(serverDir, "dist/ui/index.html")
const shots = path.join(repoRoot, "dashboard-screenshots")
const actionButtons =
  /^(New certificate|Renew|Revoke…|Archive…|Cancel job|Retry job|Rotate key|Retire…|New (issuer|target|notifier)|Validate|Edit|Delete)$/

/** `npm test` right after `npm ci` has no build: the UI is built here, with Vite, once. */
const uiBuilt = () => {
  if (!fs.existsSync(uiIndex)) return false
  const assets = [...fs.readFileSync(uiIndex, "utf8").matchAll(/(?:src|href)="\/(assets\/[^"]+)"/g)].map((m) => m[1])
  return assets.length > 0 && assets.every((a) => fs.existsSync(path.join(serverDir, "dist/ui", a)))
}
const ensureUiBuilt = () => {
  if (uiBuilt()) return
  const vitePackage = createRequire(path.join(serverDir, "package.json")).resolve("vite/package.json")
  const vite = path.join(path.dirname(vitePackage), "bin/vite.js")
  const started = Date.now()
  execFileSync(process.execPath, [vite, "build", "--config", path.join(serverDir, "ui/vite.config.ts")], {
    cwd: serverDir,
    stdio: "inherit"
  })
  console.log(`[dashboard] built the UI in ${Date.now() - started} ms`)
}

describe.skipIf(!run)("dashboard in headless Chromium (server + agent processes, PostgreSQL)", () => {
  let server: ServerHandle
  let agent: AgentHandle
  let db: Db
  let context: BrowserContext
  let page: Page
  const viewerKey = `cct_viewer_${randomBytes(16).toString("hex")}`
  const deployDir = tempDir("certctl-dash-deploy-")
  const problems: Array<string> = []
  let certId = ""

  const watch = (p: Page) => {
    p.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`))
    p.on("console", (m) => {
      if (m.type() === "error" && /Content Security Policy|Refused to/i.test(m.text()))
        problems.push(`console: ${m.text()}`)
    })
  }

  const shoot = async (name: string) => {
    for (const width of [1280, 390])
      for (const scheme of ["light", "dark"] as const) {
        await page.setViewportSize({ width, height: width === 390 ? 844 : 860 })
        await page.emulateMedia({ colorScheme: scheme })
        await page.evaluate("window.scrollTo(0, 0)")
        await page.screenshot({ path: path.join(shots, `${name}-${width}-${scheme}.png`) })
      }
    await page.setViewportSize({ width: 1280, height: 860 })
    await page.emulateMedia({ colorScheme: "light" })
  }

  const go = async (p: Page, to: string, heading: string | RegExp) => {
    await p.goto(`${server.url}${to}`)
    await p.getByRole("heading", { level: 1, name: heading }).waitFor()
  }

  const signIn = async (p: Page, key: string) => {
    await p.goto(`${server.url}/`)
    await p.getByLabel("API key", { exact: true }).fill(key)
    await p.getByRole("button", { name: "Sign in" }).click()
    await p.getByRole("navigation", { name: "Main" }).waitFor()
  }

  beforeAll(async () => {
    ensureUiBuilt()
    fs.mkdirSync(shots, { recursive: true })
    server = await startServer()
    db = openDb(server.databaseUrl)
    agent = await startAgent(server, { id: "dash-agent" })
    await createLocalCa(api(server), "local")
    await db.query(
      "INSERT INTO agent_api_keys (id, agent_id, role, key_hash) VALUES ('key-dash-viewer', NULL, 'viewer', $1)",
      [createHash("sha256").update(viewerKey).digest()]
    )
    context = await chromium.launchPersistentContext(tempDir("certctl-chromium-"), {
      executablePath: chromiumPath,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync"
      ],
      viewport: { width: 1280, height: 860 },
      timezoneId: "Europe/Berlin"
    })
    page = context.pages()[0] ?? (await context.newPage())
    watch(page)
  }, 240_000)

  afterAll(async () => {
    await context?.close()
    await agent?.stop()
    await db?.end()
    await server?.stop()
  })

  it("serves the dashboard with a strict CSP and long-cached hashed assets", async () => {
    const res = await fetch(`${server.url}/certificates/some-client-route`)
    expect(res.status, await res.clone().text()).toBe(200)
    expect(res.headers.get("content-type")).toContain("text/html")
    expect(res.headers.get("content-security-policy")).toContain("script-src 'self'")
    expect(res.headers.get("x-content-type-options")).toBe("nosniff")
    const html = await res.text()
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/) // no inline script
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1]
    expect(asset).toBeDefined()
    const js = await fetch(`${server.url}${asset}`)
    expect(js.headers.get("cache-control")).toContain("immutable")
    expect(js.headers.get("content-type")).toContain("javascript")
    // The API's own paths are not swallowed by the dashboard.
    expect((await fetch(`${server.url}/api/v1/nope`)).status).toBe(404)
    // A missing asset is an API-shaped 404 with its request id; ".." cannot climb out of the build.
    const missing = await fetch(`${server.url}/assets/missing.js`)
    const missingBody = (await missing.json()) as { error: string; request_id: string }
    expect(missing.status).toBe(404)
    expect(missingBody.error).toBe("not_found")
    expect(missing.headers.get("x-request-id")).toBe(missingBody.request_id)
    for (const climb of ["/%2e%2e/package.json", "/assets/..%2f..%2fpackage.json", "/..%2f..%2f..%2fpackage.json"]) {
      const res = await fetch(`${server.url}${climb}`)
      expect(await res.text(), climb).not.toContain('"name": "@certctl/server"')
    }
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200)
  })

  it("signs in, creates a target and a certificate through the forms, and shows it issued and verified live", async () => {
    await page.goto(`${server.url}/`)
    await page.getByRole("heading", { name: "Sign in to certctl" }).waitFor()
    await shoot("signin")
    // A wrong key is refused with the API's error and request id.
    await page.getByLabel("API key", { exact: true }).fill("cct_wrong_key")
    await page.getByRole("button", { name: "Sign in" }).click()
    await page.locator(".request-id").waitFor()
    await signIn(page, server.adminKey)
    expect(await page.evaluate("sessionStorage.length")).toBe(1)
    expect(page.url()).not.toContain(server.adminKey)

    // A file target through the generated form (or the JSON fallback on a server without types).
    await go(page, "/targets", "Targets")
    await page.getByRole("button", { name: "New target" }).click()
    const dialog = page.getByRole("dialog")
    await dialog.getByLabel("Name", { exact: true }).fill("dash-files")
    await dialog.getByLabel("Id (optional)", { exact: true }).fill("dash-files")
    await dialog.getByLabel("Agent", { exact: true }).selectOption("dash-agent")
    await dialog.locator("#cn-type").waitFor()
    if ((await dialog.locator("#cn-type").evaluate((e) => e.tagName)) === "SELECT") {
      await dialog.getByLabel("Type", { exact: true }).selectOption("file")
      await dialog.locator('[name="directory"]').fill(deployDir)
    } else {
      await dialog.locator("#cn-type").fill("file")
      await dialog.getByLabel("Config (JSON)", { exact: true }).fill(JSON.stringify({ directory: deployDir }))
    }
    await dialog.getByRole("button", { name: /Create and validate/ }).click()
    await page.locator(".validation").first().waitFor()
    expect(await page.locator(".validation").first().textContent()).toContain("✓")

    await go(page, "/certificates", "Certificates")
    await page.getByRole("button", { name: "New certificate" }).click()
    const form = page.getByRole("dialog")
    await form.getByLabel("Domain", { exact: true }).fill("dash.example.com")
    await form.getByLabel("Issuer", { exact: true }).selectOption("local")
    await form.getByRole("checkbox", { name: /dash-files/ }).check()
    await form.getByLabel("Renew days before expiry", { exact: true }).fill("20")
    await form.getByRole("button", { name: "Create certificate" }).click()
    await page.waitForURL(/\/certificates\/cert-dash/)
    certId = decodeURIComponent(page.url().split("/certificates/")[1])
    await page.getByRole("heading", { level: 1, name: "dash.example.com" }).waitFor()

    // No reload from here on: the page follows the jobs by itself (events or polling).
    await page.locator('details.job[data-state="COMPLETED"]').first().waitFor({ timeout: 90_000 })
    await page.locator(".verified").first().waitFor({ timeout: 90_000 })
    const serial = (await api(server).get(`/api/v1/certificates/${certId}`)).body.serial as string
    expect(serial).toBeTruthy()
    await expect.poll(() => page.locator("table.deployments").textContent(), { timeout: 30_000 }).toContain(serial)
    const steps = await page.locator("details.job li.step").count()
    expect(steps).toBeGreaterThan(0)
    console.log(`[dashboard] live mode: ${await page.locator(".live").first().textContent()}`)
    await shoot("certificate")
  }, 180_000)

  it("renews and revokes from the certificate page", async () => {
    await page.getByRole("button", { name: "Renew" }).click()
    await page.getByRole("status").filter({ hasText: "Renewal requested." }).waitFor()
    await expect
      .poll(async () => (await api(server).get(`/api/v1/certificates/${certId}/versions`)).body.items.length, {
        timeout: 90_000
      })
      .toBe(2)
    const current = (await api(server).get(`/api/v1/certificates/${certId}`)).body.serial as string
    // The page shows the new serial served on the target, without a reload.
    await expect.poll(() => page.locator("table.deployments").textContent(), { timeout: 60_000 }).toContain(current)

    await page.getByRole("button", { name: "Revoke…" }).click()
    await page.getByRole("dialog").getByLabel("Reason", { exact: true }).selectOption("superseded")
    await page.getByRole("dialog").getByRole("button", { name: "Revoke certificate" }).click()
    await page.locator(".summary .badge.s-revoked").waitFor({ timeout: 60_000 })
    expect((await api(server).get(`/api/v1/certificates/${certId}`)).body.status).toBe("revoked")
    await page.getByText("certificate_revoked").first().waitFor({ timeout: 30_000 })
  }, 180_000)

  it("filters the inventory at 10,000 certificates with server-side filters and cursor pages", async () => {
    await db.query(
      `INSERT INTO certificates (id, domain, names_key, issuer_id, renewal_days_before, lifetime_seconds, key_algorithm,
         status, not_after, renew_at)
       SELECT 'bulk-' || lpad(g::text, 5, '0'), 'c' || g || '.fleet.example', 'c' || g || '.fleet.example', 'local', 30,
              7776000, 'ecdsa-p256', CASE WHEN g % 97 = 0 THEN 'failed' ELSE 'active' END,
              now() + (g % 120) * interval '1 day' + interval '2 hours',
              now() + ((g % 120) - 30) * interval '1 day'
       FROM generate_series(1, 10000) g`
    )
    await db.query("ANALYZE certificates")
    await go(page, "/certificates", "Certificates")
    await page.locator("table.inventory tbody tr").nth(49).waitFor()
    expect(await page.locator("table.inventory tbody tr").count()).toBe(50)
    await page.getByRole("button", { name: "Next →" }).click()
    await page.getByText("Page 2", { exact: true }).waitFor()
    await shoot("inventory")

    const started = Date.now()
    await page.getByLabel("Status", { exact: true }).selectOption("failed")
    await page.getByLabel("Search names", { exact: true }).fill("c97")
    await page.waitForURL(/q=c97/)
    // The status filter alone already lists c97 and c970 (both failed), so wait for the state in
    // which the name filter has been applied too: every row matches it.
    const rowsNow = () => page.locator("table.inventory tbody tr a").allTextContents()
    await expect
      .poll(
        async () => {
          const rows = await rowsNow()
          return rows.length > 0 && rows.every((r) => r.includes("c97")) ? rows : []
        },
        { timeout: 30_000 }
      )
      .toEqual(expect.arrayContaining(["c97.fleet.example", "c970.fleet.example"]))
    const filteredMs = Date.now() - started
    const rows = await page.locator("table.inventory tbody tr a").allTextContents()
    expect(rows.every((r) => r.includes("c97"))).toBe(true)
    const serverMs = await page.locator("table.inventory").getAttribute("data-loaded-ms")
    // Recorded, not asserted: tests never assert times.
    console.log(
      `[dashboard] inventory at 10,000 certificates: filtered first page shown ${filteredMs} ms after input (incl. 300 ms typing debounce); API call ${serverMs} ms`
    )

    await go(page, "/timeline", "Expiry timeline")
    await page.locator("svg.chart rect").first().waitFor()
    await shoot("timeline")
  }, 120_000)

  it("shows jobs, agents, connectors and the audit log with its chain check", async () => {
    await go(page, "/jobs", "Jobs")
    await page.locator(".live").filter({ hasText: "Live" }).waitFor()
    await shoot("jobs")
    await go(page, "/agents", "Agents")
    await page.getByText("dash-agent").first().waitFor()
    await shoot("agents")
    await go(page, "/issuers", "Issuers")
    await page.getByText("local-ca").first().waitFor()
    await shoot("issuers")
    await go(page, "/targets", "Targets")
    await shoot("targets")
    await go(page, "/notifiers", "Notifiers")
    await shoot("notifiers")
    await go(page, "/audit", "Audit log")
    await page.getByText(/Audit chain verified/).waitFor()
    await shoot("audit")
    // The toggle overrides the system theme.
    await page
      .getByRole("button", { name: /Dark|Light/ })
      .first()
      .click()
    expect(await page.evaluate("document.documentElement.dataset.theme")).toBe("dark")
    await page
      .getByRole("button", { name: /Dark|Light/ })
      .first()
      .click()
    // Times are local with the UTC value on hover.
    expect(await page.locator("time[title$='UTC']").count()).toBeGreaterThan(0)
  }, 120_000)

  it("shows a viewer no action, and the API refuses the actions anyway", async () => {
    const viewer = await context.newPage() // a new tab: its own sessionStorage, so its own sign-in
    watch(viewer)
    await signIn(viewer, viewerKey)
    await viewer.getByText("viewer", { exact: true }).waitFor()
    const visibleActions = async () =>
      (await viewer.getByRole("button").allTextContents()).map((t) => t.trim()).filter((t) => actionButtons.test(t))
    for (const [to, heading] of [
      ["/certificates", "Certificates"],
      [`/certificates/${encodeURIComponent(certId)}`, "dash.example.com"],
      ["/jobs", "Jobs"],
      ["/agents", "Agents"],
      ["/targets", "Targets"],
      ["/issuers", "Issuers"],
      ["/notifiers", "Notifiers"]
    ] as const) {
      await go(viewer, to, heading)
      // Rows (or the empty note) are in: row actions would have rendered with them.
      await viewer.locator("tbody tr, .empty").first().waitFor()
      await viewer.waitForFunction(`!document.querySelector('[aria-busy="true"]')`)
      expect(await visibleActions(), `action buttons on ${to}`).toEqual([])
    }
    // The same calls from the viewer's browser session are refused by the API.
    const statuses = await viewer.evaluate(async (id) => {
      // Runs in the page (this file is type-checked without DOM types).
      const key = (globalThis as any).sessionStorage.getItem("certctl.apiKey") as string
      const call = (method: string, url: string, body?: unknown) =>
        fetch(url, {
          method,
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
          body: body === undefined ? undefined : JSON.stringify(body)
        }).then(async (r) => ({ status: r.status, body: (await r.json()) as { request_id?: string } }))
      return [
        await call("POST", `/api/v1/certificates/${encodeURIComponent(id)}/renew`, {}),
        await call("POST", "/api/v1/certificates", { domain: "x.example.com", issuer_id: "local", target_ids: [] }),
        await call("POST", "/api/v1/agents/dash-agent/rotate-key", {})
      ]
    }, certId)
    for (const s of statuses) {
      expect(s.status).toBe(403)
      expect(s.body.request_id).toBeTruthy()
    }
    await viewer.close()
    expect(problems).toEqual([])
  }, 120_000)
})
