import type { Notifier } from "@certctl/core"

/**
 * Human-readable renderings of lifecycle events, shared by every notifier that writes to people.
 *
 * Each event is first reduced to one neutral model (a headline, the facts as label/value rows,
 * and paragraphs saying what it means and what happens next); the text and HTML bodies are both
 * produced from that model, so they cannot drift apart and every interpolated value passes
 * through exactly one escaping point on the HTML side.
 */
export interface Rendered {
  readonly subject: string
  readonly text: string
  readonly html: string
}

interface Model {
  readonly subject: string
  readonly headline: string
  readonly facts: ReadonlyArray<readonly [label: string, value: string | undefined]>
  readonly paragraphs: ReadonlyArray<string>
}

type Event = Notifier.NotificationEvent

export const render = (event: Event): Rendered => {
  const model = modelFor(event)
  return { subject: oneLine(model.subject), text: toText(model, event), html: toHtml(model, event) }
}

/** `"in 1 day"`, `"in 12 days"`, `"today"`, `"2 days ago"` — negative means already expired. */
export const describeDaysLeft = (days: number): string => {
  const n = Math.trunc(days)
  if (n === 0) return "today"
  const abs = Math.abs(n)
  const unit = abs === 1 ? "day" : "days"
  return n > 0 ? `in ${abs} ${unit}` : `${abs} ${unit} ago`
}

const domainOf = (event: Event): string => event.certificate?.domain ?? "(unknown certificate)"

const certificateFacts = (event: Event): Model["facts"] => {
  const c = event.certificate
  if (!c) return []
  return [
    ["Domain", c.domain],
    ["Names", c.names.length > 0 ? c.names.join(", ") : undefined],
    ["Serial", c.serial],
    ["Expires (not after)", c.not_after],
    ["Certificate id", c.id]
  ]
}

const targetFact = (event: Event): Model["facts"][number] => [
  "Target",
  event.target ? `${event.target.name} (${event.target.id})` : undefined
]

const jobFacts = (event: Event): Model["facts"] => {
  const j = event.job
  if (!j) return []
  return [
    ["Job kind", j.kind],
    ["Job state", j.state],
    ["Error", j.error],
    ["Job id", j.id]
  ]
}

const modelFor = (event: Event): Model => {
  const domain = domainOf(event)
  switch (event.type) {
    case "certificate.expiring": {
      const when = event.days_left === undefined ? "soon" : describeDaysLeft(event.days_left)
      const expired = event.days_left !== undefined && event.days_left < 0
      return {
        subject: `Certificate for ${domain} ${expired ? "expired" : "expires"} ${when}`,
        headline: `The certificate for ${domain} ${expired ? "expired" : "expires"} ${when}.`,
        facts: [["Days left", event.days_left?.toString()], ...certificateFacts(event)],
        paragraphs: [
          expired
            ? "Clients connecting to these names are now seeing an expired certificate. Renew and deploy it immediately."
            : "certctl has not yet put a renewed certificate in place. Check the certificate's renewal jobs; if one has failed or been abandoned, fix its cause and renew now, before clients see an expired certificate."
        ]
      }
    }
    case "job.failed": {
      const kind = event.job?.kind ?? "certificate"
      return {
        subject: `${kind} job failed for ${domain}; certctl will retry`,
        headline: `A ${kind} job for ${domain} failed.`,
        facts: [...jobFacts(event), ...certificateFacts(event), targetFact(event)],
        paragraphs: [
          "What happens next: certctl retries this job automatically, with increasing delays between attempts. No action is needed if a later attempt succeeds.",
          "If the error keeps recurring, the job is abandoned once its attempts run out and you will receive a separate notification asking for a human to step in."
        ]
      }
    }
    case "job.abandoned": {
      const kind = event.job?.kind ?? "certificate"
      return {
        subject: `Action needed: ${kind} job for ${domain} abandoned`,
        headline: `certctl has given up on a ${kind} job for ${domain}. It needs a human.`,
        facts: [...jobFacts(event), ["Reason", event.reason], ...certificateFacts(event), targetFact(event)],
        paragraphs: [
          "The job will not be retried automatically: either its attempts ran out or its error cannot succeed on retry (for example rejected credentials, an invalid configuration or a request the issuer refused).",
          "What to do: read the error above, fix its cause (credentials, issuer or target configuration, DNS, or network access), then start the job again from the certctl API or CLI. Until then the certificate is not renewed or deployed, so keep an eye on its expiry date."
        ]
      }
    }
    case "certificate.issued":
      return {
        subject: `Certificate issued for ${domain}`,
        headline: `A new certificate was issued for ${domain}.`,
        facts: [...certificateFacts(event), targetFact(event)],
        paragraphs: ["Deployment to its targets follows automatically."]
      }
    case "certificate.renewed":
      return {
        subject: `Certificate renewed for ${domain}`,
        headline: `The certificate for ${domain} was renewed.`,
        facts: [...certificateFacts(event), targetFact(event)],
        paragraphs: ["The renewed certificate replaces the previous one on its targets; no action is needed."]
      }
    case "certificate.deployed": {
      const to = event.target ? ` to ${event.target.name}` : ""
      return {
        subject: `Certificate for ${domain} deployed${to}`,
        headline: `The certificate for ${domain} was deployed${to} and verified.`,
        facts: [...certificateFacts(event), targetFact(event)],
        paragraphs: ["A TLS handshake with the target confirmed that it now serves this certificate's serial."]
      }
    }
    case "certificate.drifted": {
      const on = event.target ? ` on ${event.target.name}` : ""
      return {
        subject: `Certificate for ${domain} drifted${on}`,
        headline: `The agent found another certificate served for ${domain}${on} than the one certctl deployed.`,
        facts: [["What the agent saw", event.reason], ...certificateFacts(event), targetFact(event)],
        paragraphs: [
          "Something changed the served certificate outside certctl (a manual copy, a configuration change, another tool). certctl does not overwrite it on its own.",
          "What to do: find out what replaced it; to put certctl's certificate back, renew or redeploy the certificate from the certctl API or CLI."
        ]
      }
    }
    case "certificate.at_risk":
      return {
        subject: `Action needed: certificate for ${domain} at risk of expiring`,
        headline: `The agent holding ${domain} could not reach certctl during the certificate's renewal window and cannot renew it by itself.`,
        facts: [["What the agent saw", event.reason], ...certificateFacts(event), targetFact(event)],
        paragraphs: [
          "The agent warned about this while the control plane was unreachable; it is delivered now that the agent reached certctl again. Its issuer does not let the agent renew on its own (the built-in CA, or an ACME issuer without agent_autonomous), or the agent's own renewal failed.",
          "What to do: check that the certificate is renewed and deployed now that the agent is back in contact; if the agent loses contact again, restore it before the expiry date above."
        ]
      }
    case "certificate.revoked":
      return {
        subject: `Certificate for ${domain} revoked`,
        headline: `The certificate for ${domain} was revoked.`,
        facts: [["Revocation reason", event.reason ?? "unspecified"], ...certificateFacts(event)],
        paragraphs: [
          "Clients that check revocation will reject this certificate. Make sure a replacement is issued and deployed to every target that served it."
        ]
      }
  }
}

const footer = (event: Event): string => `Event ${event.type} (${event.id}) at ${event.occurred_at}. Sent by certctl.`

const presentFacts = (model: Model) =>
  model.facts.filter((f): f is readonly [string, string] => f[1] !== undefined && f[1] !== "")

const toText = (model: Model, event: Event): string => {
  const facts = presentFacts(model)
  const width = Math.max(0, ...facts.map(([label]) => label.length))
  return [
    model.headline,
    "",
    ...facts.map(([label, value]) => `${(label + ":").padEnd(width + 1)} ${value}`),
    "",
    ...model.paragraphs.flatMap((p) => [p, ""]),
    "-- ",
    footer(event),
    ""
  ].join("\n")
}

const toHtml = (model: Model, event: Event): string => {
  const rows = presentFacts(model)
    .map(
      ([label, value]) =>
        `<tr><th style="text-align:left;padding:2px 12px 2px 0;vertical-align:top">${escapeHtml(label)}</th>` +
        `<td style="padding:2px 0;font-family:monospace">${escapeHtml(value)}</td></tr>`
    )
    .join("\n")
  return [
    "<!DOCTYPE html>",
    `<html><head><meta charset="utf-8"><title>${escapeHtml(oneLine(model.subject))}</title></head>`,
    '<body style="font-family:sans-serif;line-height:1.4">',
    `<p><strong>${escapeHtml(model.headline)}</strong></p>`,
    `<table>\n${rows}\n</table>`,
    ...model.paragraphs.map((p) => `<p>${escapeHtml(p)}</p>`),
    `<p style="color:#666;font-size:smaller">${escapeHtml(footer(event))}</p>`,
    "</body></html>",
    ""
  ].join("\n")
}

/** Escapes the five characters that matter in element content and quoted attributes. */
export const escapeHtml = (value: string): string =>
  value.replace(/[&<>"']/g, (ch) => HTML_ENTITIES[ch as keyof typeof HTML_ENTITIES])

const HTML_ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" } as const

/** Subjects are single header lines: a CR/LF from event data must not start a new header. */
const oneLine = (value: string): string => value.replace(/[\r\n\t]+/g, " ").trim()
