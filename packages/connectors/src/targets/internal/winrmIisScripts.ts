/**
 * The PowerShell the IIS target runs, one short straight-line script per step. Decisions
 * (create or update a binding, which certificate to delete) are made by the connector from the
 * JSON each script prints, so every script stays small, readable in an audit log, and under
 * the cmd.exe command-line limit once encoded.
 *
 * Every value is embedded as a single-quoted PowerShell literal (`psQuote`), never by string
 * interpolation, so site names, host headers and passwords cannot break out of the script.
 */

export const STORE = "Cert:\\LocalMachine\\My"

/** PowerShell single-quoted literal. PowerShell also treats U+2018..U+201B as single quotes. */
export const psQuote = (value: string): string => `'${value.replace(/['\u2018\u2019\u201A\u201B]/g, (q) => q + q)}'`

export interface ScriptParts {
  /** Lines before `try`: only assignments that cannot fail, so `finally` may use them. */
  readonly prelude?: ReadonlyArray<string>
  readonly body: ReadonlyArray<string>
  readonly cleanup?: ReadonlyArray<string>
}

/**
 * Stop on the first error, print only its message to stderr (not PowerShell's CLIXML error
 * records), always run the cleanup, and exit 1 on failure.
 */
export const script = (parts: ScriptParts): string =>
  [
    "$ErrorActionPreference = 'Stop'",
    "$ProgressPreference = 'SilentlyContinue'",
    "$certctlExit = 0",
    ...(parts.prelude ?? []),
    "try {",
    ...parts.body,
    "} catch {",
    "$certctlExit = 1",
    "[Console]::Error.WriteLine($_.Exception.Message)",
    "} finally {",
    ...(parts.cleanup ?? []),
    "}",
    "exit $certctlExit"
  ].join("\n")

/** `@{ k = expr; … }` rendered through ConvertTo-Json: one compact JSON line on stdout. */
const emit = (fields: Readonly<Record<string, string>>) =>
  `ConvertTo-Json -Compress -InputObject @{ ${Object.entries(fields)
    .map(([k, v]) => `${k} = ${v}`)
    .join("; ")} }`

export interface BindingSpec {
  readonly site: string
  readonly ip: string
  readonly port: number
  readonly hostHeader: string
  /** IIS sslFlags: 1 = SNI. */
  readonly sslFlags: number
}

/** IIS bindingInformation: `ip:port:host`. */
export const bindingInformation = (b: BindingSpec) => `${b.ip}:${b.port}:${b.hostHeader}`

const lookupSite = (b: BindingSpec) => `$site = Get-Website | Where-Object { $_.Name -eq ${psQuote(b.site)} }`
const lookupBinding = (b: BindingSpec) =>
  `$binding = Get-WebBinding -Name ${psQuote(b.site)} -Protocol 'https' | Where-Object { $_.bindingInformation -eq ${psQuote(bindingInformation(b))} }`
const lookupCert = (variable: string, thumbprint: string) =>
  `$${variable} = Get-ChildItem -LiteralPath ${psQuote(STORE)} | Where-Object { $_.Thumbprint -eq ${psQuote(thumbprint)} }`

/** Site, binding, its certificate, and whether `thumbprint` is already in the store. */
export const inspect = (b: BindingSpec, thumbprint: string) =>
  script({
    body: [
      "Import-Module WebAdministration",
      lookupSite(b),
      lookupBinding(b),
      lookupCert("current", thumbprint),
      emit({
        site: "$site.Name",
        bindingInformation: "$binding.bindingInformation",
        sslFlags: "$binding.sslFlags",
        certificateHash: "$binding.certificateHash",
        present: "$current.Thumbprint"
      })
    ]
  })

/** Like `inspect`, plus the certificate bound now and every certificate certctl stored for `friendlyName`. */
export const describe = (b: BindingSpec, friendlyName: string) =>
  script({
    body: [
      "Import-Module WebAdministration",
      lookupSite(b),
      lookupBinding(b),
      `$bound = Get-ChildItem -LiteralPath ${psQuote(STORE)} | Where-Object { $_.Thumbprint -eq $binding.certificateHash }`,
      `$managed = @(Get-ChildItem -LiteralPath ${psQuote(STORE)} | Where-Object { $_.FriendlyName -eq ${psQuote(friendlyName)} })`,
      emit({
        site: "$site.Name",
        bindingInformation: "$binding.bindingInformation",
        certificateHash: "$binding.certificateHash",
        serial: "$bound.SerialNumber",
        friendlyName: "$bound.FriendlyName",
        managed: "@($managed | ForEach-Object { $_.Thumbprint })"
      })
    ]
  })

const tempPaths = (id: string) => [
  `$b64 = Join-Path $env:TEMP ${psQuote(`certctl-${id}.b64`)}`,
  `$pfx = Join-Path $env:TEMP ${psQuote(`certctl-${id}.pfx`)}`
]

/** One base64 chunk of the PFX; the first truncates, so a retried upload starts clean. */
export const uploadChunk = (id: string, chunk: string, first: boolean) =>
  script({
    prelude: tempPaths(id),
    body: [`[IO.File]::${first ? "WriteAllText" : "AppendAllText"}($b64, ${psQuote(chunk)})`]
  })

/** Decode, import into LocalMachine\My, report the certificate that carries the key; always delete both temp files. */
export const importPfx = (id: string, password: string) =>
  script({
    prelude: tempPaths(id),
    body: [
      "[IO.File]::WriteAllBytes($pfx, [Convert]::FromBase64String([IO.File]::ReadAllText($b64)))",
      `$password = ConvertTo-SecureString -String ${psQuote(password)} -AsPlainText -Force`,
      `$imported = Import-PfxCertificate -FilePath $pfx -CertStoreLocation ${psQuote(STORE)} -Password $password`,
      "$leaf = $imported | Where-Object { $_.HasPrivateKey }",
      emit({ thumbprint: "$leaf.Thumbprint", serial: "$leaf.SerialNumber" })
    ],
    cleanup: ["Remove-Item -LiteralPath $b64, $pfx -Force -ErrorAction SilentlyContinue"]
  })

/** Best-effort removal of the temp files after a failed upload. */
export const removeTemp = (id: string) =>
  script({ prelude: tempPaths(id), body: ["Remove-Item -LiteralPath $b64, $pfx -Force -ErrorAction SilentlyContinue"] })

export interface BindPlan {
  readonly create: boolean
  readonly updateFlags: boolean
  readonly hadCertificate: boolean
}

/**
 * Point the HTTPS binding's SSL certificate at `thumbprint` and read the binding back. The old
 * SSL binding is removed before sslFlags change: http.sys keys it by `ip:port` without SNI and
 * by `host:port` with it, so after the change the old one could no longer be found.
 */
export const bind = (b: BindingSpec, thumbprint: string, plan: BindPlan) =>
  script({
    body: [
      "Import-Module WebAdministration",
      ...(plan.create
        ? [
            `New-WebBinding -Name ${psQuote(b.site)} -Protocol 'https' -IPAddress ${psQuote(b.ip)} -Port ${b.port}${
              b.hostHeader ? ` -HostHeader ${psQuote(b.hostHeader)}` : ""
            } -SslFlags ${b.sslFlags}`
          ]
        : []),
      lookupBinding(b),
      // AddSslCertificate fails with 0x800700B7 while an SSL binding exists for this endpoint.
      ...(plan.hadCertificate ? ["$binding.RemoveSslCertificate()"] : []),
      ...(plan.updateFlags
        ? [
            `Set-WebBinding -Name ${psQuote(b.site)} -BindingInformation ${psQuote(bindingInformation(b))} -PropertyName 'sslFlags' -Value ${b.sslFlags}`,
            lookupBinding(b)
          ]
        : []),
      `$binding.AddSslCertificate(${psQuote(thumbprint)}, 'My')`,
      lookupBinding(b),
      emit({ certificateHash: "$binding.certificateHash" })
    ]
  })

/** Take the certificate off the HTTPS binding and, when `removeBinding`, delete the binding too. */
export const unbind = (b: BindingSpec, hasCertificate: boolean, removeBinding: boolean) =>
  script({
    body: [
      "Import-Module WebAdministration",
      lookupBinding(b),
      ...(hasCertificate ? ["$binding.RemoveSslCertificate()"] : []),
      // Piping the one binding object removes exactly it, whatever its host header.
      ...(removeBinding ? ["$binding | Remove-WebBinding"] : []),
      emit({ removed: removeBinding ? "$true" : "$false" })
    ]
  })

/** How many bindings still use `thumbprint`, and the certificate's friendly name. */
export const certificateUsage = (thumbprint: string) =>
  script({
    body: [
      "Import-Module WebAdministration",
      `$users = @(Get-WebBinding | Where-Object { $_.certificateHash -eq ${psQuote(thumbprint)} })`,
      lookupCert("cert", thumbprint),
      emit({ inUse: "$users.Count", friendlyName: "$cert.FriendlyName", thumbprint: "$cert.Thumbprint" })
    ]
  })

/** Delete certificates (and their private keys) from LocalMachine\My. */
export const deleteCertificates = (thumbprints: ReadonlyArray<string>) =>
  script({
    body: [
      ...thumbprints.map((t) => `Remove-Item -LiteralPath ${psQuote(`${STORE}\\${t}`)} -DeleteKey`),
      emit({ deleted: String(thumbprints.length) })
    ]
  })
