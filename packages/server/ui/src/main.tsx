import { render } from "preact"
import { useEffect, useState } from "preact/hooks"
import "./styles.css"
import { Agents } from "./pages/Agents.js"
import { Audit } from "./pages/Audit.js"
import { CertificatePage } from "./pages/CertificatePage.js"
import { Connectors } from "./pages/Connectors.js"
import { Inventory } from "./pages/Inventory.js"
import { Jobs } from "./pages/Jobs.js"
import { SignIn } from "./pages/SignIn.js"
import { Timeline } from "./pages/Timeline.js"
import { location, match, onLinkClick } from "./router.js"
import { restore, session, signOut } from "./session.js"
import { useSignal } from "./signal.js"
import { effectiveTheme, theme, toggleTheme } from "./theme.js"

const nav = [
  { href: "/certificates", label: "Certificates" },
  { href: "/timeline", label: "Timeline" },
  { href: "/jobs", label: "Jobs" },
  { href: "/agents", label: "Agents" },
  { href: "/issuers", label: "Issuers" },
  { href: "/targets", label: "Targets" },
  { href: "/notifiers", label: "Notifiers" },
  { href: "/audit", label: "Audit" }
]

const Route = ({ path }: { path: string }) => {
  const cert = match("/certificates/:id", path)
  if (cert) return <CertificatePage id={cert.id} />
  switch (path.replace(/\/+$/, "") || "/") {
    case "/":
    case "/certificates":
      return <Inventory />
    case "/timeline":
      return <Timeline />
    case "/jobs":
      return <Jobs />
    case "/agents":
      return <Agents />
    case "/issuers":
      return <Connectors kind="issuers" />
    case "/targets":
      return <Connectors kind="targets" />
    case "/notifiers":
      return <Connectors kind="notifiers" />
    case "/audit":
      return <Audit />
    default:
      return (
        <section>
          <h1 id="page-title" tabIndex={-1}>
            Not found
          </h1>
          <p>
            No page at <code>{path}</code>. <a href="/certificates">Go to certificates</a>.
          </p>
        </section>
      )
  }
}

const ThemeToggle = () => {
  useSignal(theme)
  const dark = effectiveTheme() === "dark"
  return (
    <button type="button" class="theme-toggle" onClick={toggleTheme} aria-pressed={dark} title="Toggle dark theme">
      {dark ? "☀ Light" : "☾ Dark"}
    </button>
  )
}

const App = () => {
  const s = useSignal(session)
  const loc = useSignal(location)
  const [ready, setReady] = useState(false)
  const [menu, setMenu] = useState(false)
  useEffect(() => {
    restore().finally(() => setReady(true))
  }, [])
  // After a client-side navigation, focus moves to the new page's heading for screen readers.
  useEffect(() => {
    setMenu(false)
    requestAnimationFrame(() => document.getElementById("page-title")?.focus({ preventScroll: true }))
  }, [loc.path])
  if (!ready) return null
  if (!s)
    return (
      <>
        <div class="topbar-float">
          <ThemeToggle />
        </div>
        <SignIn />
      </>
    )
  const active = (href: string) =>
    loc.path === href || loc.path.startsWith(`${href}/`) || (href === "/certificates" && loc.path === "/")
  return (
    <div class="shell">
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="topbar">
        <a class="brand" href="/certificates">
          certctl
        </a>
        <button
          type="button"
          class="menu-button"
          aria-expanded={menu}
          aria-controls="nav"
          onClick={() => setMenu((m) => !m)}
        >
          Menu
        </button>
        <nav id="nav" class={menu ? "open" : undefined} aria-label="Main">
          <ul>
            {nav.map((n) => (
              <li key={n.href}>
                <a href={n.href} aria-current={active(n.href) ? "page" : undefined}>
                  {n.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div class="who">
          <span class={`role role-${s.role}`} title="The role of the key you signed in with">
            {s.role}
          </span>
          <ThemeToggle />
          <button type="button" onClick={signOut}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <Route path={loc.path} />
      </main>
    </div>
  )
}

const root = document.getElementById("app")!
root.addEventListener("click", onLinkClick)
render(<App />, root)
