import { scaleLinear, scaleTime } from "d3-scale"
import { api, type Certificate } from "../api.js"
import { Empty, ErrorBox, PageHeader, Status, Time, useAsync, utc } from "../components.js"

const DAY = 86_400_000
const HORIZON_DAYS = 90
/** The chart reads at most this many certificates (ten pages of the API's largest page). */
const CAP = 10_000

const atRisk = (c: Certificate, now: number) =>
  c.status === "failed" ||
  c.status === "expired" ||
  (c.renew_at !== null && Date.parse(c.renew_at) < now && c.status !== "renewing")

const load = async () => {
  const now = Date.now()
  const before = new Date(now + HORIZON_DAYS * DAY).toISOString()
  const items: Array<Certificate> = []
  let cursor: string | undefined
  do {
    const page = await api.certificates.list({ expiring_before: before, cursor, limit: 1000 })
    for (const c of page.items) if (c.status !== "archived" && c.status !== "revoked") items.push(c)
    cursor = page.next_cursor ?? undefined
  } while (cursor && items.length < CAP)
  items.sort((a, b) => Date.parse(a.not_after ?? "") - Date.parse(b.not_after ?? ""))
  return { now, items, truncated: cursor !== undefined }
}

/** Expiries per day over the next 90 days, stacked: at risk (red) and on schedule. */
const Histogram = ({ items, now }: { items: ReadonlyArray<Certificate>; now: number }) => {
  const W = 900
  const H = 220
  const m = { top: 12, right: 12, bottom: 28, left: 40 }
  const start = new Date(now)
  const end = new Date(now + HORIZON_DAYS * DAY)
  const x = scaleTime()
    .domain([start, end])
    .range([m.left, W - m.right])
  const days = Array.from({ length: HORIZON_DAYS }, () => ({ ok: 0, risk: 0 }))
  for (const c of items) {
    const d = Math.floor((Date.parse(c.not_after ?? "") - now) / DAY)
    const day = days[Math.max(0, Math.min(HORIZON_DAYS - 1, d))]
    if (atRisk(c, now)) day.risk++
    else day.ok++
  }
  const max = Math.max(1, ...days.map((d) => d.ok + d.risk))
  const y = scaleLinear()
    .domain([0, max])
    .nice()
    .range([H - m.bottom, m.top])
  const bw = (W - m.left - m.right) / HORIZON_DAYS
  const fmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" })
  return (
    <svg
      class="chart"
      viewBox={`0 0 ${W} ${H}`}
      role="img"
      aria-label={`Certificates expiring per day over the next ${HORIZON_DAYS} days: ${items.length} in all, ${items.filter((c) => atRisk(c, now)).length} at risk`}
    >
      {y.ticks(4).map((t) => (
        <g key={t}>
          <line class="grid" x1={m.left} x2={W - m.right} y1={y(t)} y2={y(t)} />
          <text class="axis" x={m.left - 6} y={y(t) + 4} text-anchor="end">
            {t}
          </text>
        </g>
      ))}
      {x.ticks(8).map((t) => (
        <text key={t.getTime()} class="axis" x={x(t)} y={H - 8} text-anchor="middle">
          {fmt.format(t)}
        </text>
      ))}
      {days.map((d, i) => {
        const day = new Date(now + i * DAY)
        const x0 = m.left + i * bw
        return (
          <g key={day.toISOString()}>
            <title>{`${fmt.format(day)}: ${d.ok + d.risk} expiring (${d.risk} at risk); ${utc(day)}`}</title>
            {d.ok ? (
              <rect class="bar-ok" x={x0 + 1} width={Math.max(1, bw - 2)} y={y(d.ok)} height={y(0) - y(d.ok)} />
            ) : null}
            {d.risk ? (
              <rect
                class="bar-risk"
                x={x0 + 1}
                width={Math.max(1, bw - 2)}
                y={y(d.ok + d.risk)}
                height={y(d.ok) - y(d.ok + d.risk)}
              />
            ) : null}
          </g>
        )
      })}
    </svg>
  )
}

/** Each certificate's renewal window (renew_at → not_after) on the same 90-day axis. */
const Windows = ({ items, now }: { items: ReadonlyArray<Certificate>; now: number }) => {
  const x = scaleTime()
    .domain([new Date(now), new Date(now + HORIZON_DAYS * DAY)])
    .range([0, 100])
    .clamp(true)
  return (
    <div class="table-wrap">
      <table class="windows">
        <thead>
          <tr>
            <th scope="col">Certificate</th>
            <th scope="col">Status</th>
            <th scope="col">Renews from</th>
            <th scope="col">Expires</th>
            <th scope="col" class="window-col">
              Renewal window (next {HORIZON_DAYS} days)
            </th>
          </tr>
        </thead>
        <tbody>
          {items.slice(0, 100).map((c) => {
            const from = c.renew_at ? x(new Date(c.renew_at)) : 0
            const to = c.not_after ? x(new Date(c.not_after)) : 0
            const risk = atRisk(c, now)
            return (
              <tr key={c.id} class={risk ? "risk" : undefined}>
                <td data-label="Certificate">
                  <a href={`/certificates/${encodeURIComponent(c.id)}`}>{c.domain}</a>
                </td>
                <td data-label="Status">
                  <Status value={c.status} />
                  {risk ? <span class="warn"> at risk</span> : null}
                </td>
                <td data-label="Renews from">
                  <Time value={c.renew_at} />
                </td>
                <td data-label="Expires">
                  <Time value={c.not_after} relative />
                </td>
                <td data-label="Window" class="window-col">
                  <svg class="window" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true">
                    <rect class="track" x="0" y="3" width="100" height="4" />
                    <rect
                      class={risk ? "bar-risk" : "bar-ok"}
                      x={from}
                      y="1"
                      width={Math.max(0.8, to - from)}
                      height="8"
                    />
                  </svg>
                </td>
              </tr>
            )
          })}
        </tbody>
      </table>
    </div>
  )
}

export const Timeline = () => {
  const data = useAsync(load, [])
  const d = data.data
  const risk = d ? d.items.filter((c) => atRisk(c, d.now)).length : 0
  return (
    <section aria-labelledby="page-title">
      <PageHeader title="Expiry timeline" />
      <ErrorBox error={data.error} />
      {d ? (
        <>
          <p>
            <strong>{d.items.length.toLocaleString()}</strong> certificates expire in the next {HORIZON_DAYS} days
            {d.truncated ? ` (the first ${CAP.toLocaleString()} are shown)` : ""};{" "}
            <strong class={risk ? "warn" : undefined}>{risk.toLocaleString()}</strong> are at risk (renewal overdue,
            failed or expired).
          </p>
          <div class="legend" aria-hidden="true">
            <span class="key key-ok" /> on schedule <span class="key key-risk" /> at risk
          </div>
          <Histogram items={d.items} now={d.now} />
          <h2>Renewal windows, soonest first</h2>
          {d.items.length === 0 ? <Empty>Nothing expires in the next {HORIZON_DAYS} days.</Empty> : null}
          <Windows items={d.items} now={d.now} />
        </>
      ) : (
        <p aria-busy="true">Loading…</p>
      )}
    </section>
  )
}
