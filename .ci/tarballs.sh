#!/usr/bin/env bash
# CI (issue 9, point 3): the npm packages as users receive them. Run from the repository root
# after `npm run build`:
#   1. check every publishable manifest against what it ships (scripts/check-packages.mjs);
#   2. `npm pack` core, connectors, sdk, agent and server;
#   3. install the five tarballs in an empty folder outside the repository (no workspace above it;
#      third-party dependencies come from the npm registry) and check the tree has one `effect`;
#   4. there: run an embedding program on the installed @certctl/core (examples/installed/embed.mjs),
#      type-check a TypeScript consumer against the installed declarations
#      (examples/installed/consumer.ts), start `npx certctl-server` and `npx certctl-agent` from the
#      installed bins, issue and deploy a certificate through the API, use the `certctl` CLI, and
#      stop both with SIGTERM, which must end them cleanly.
# Set CERTCTL_KEEP_TARBALL_DIR=1 to keep the temporary folder (logs, data) for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

# The caller's certctl settings (a CI database URL, keys) must not leak into the installed bins.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^CERTCTL_' || true)
unset NODE_PATH NODE_OPTIONS

now_ms() { echo $(($(date +%s%N) / 1000000)); }
t_start=$(now_ms)
phase_name=""
phase_t=$t_start
timings=()
phase() {
  local t
  t=$(now_ms)
  [ -z "$phase_name" ] || timings+=("$(printf '  %-52s %6.1f s' "$phase_name" "$(((t - phase_t)))e-3")")
  phase_name=$1
  phase_t=$t
  [ -z "$1" ] || echo "== tarballs: $1"
}
fail() {
  echo "tarballs: FAILED: $*" >&2
  exit 1
}

work=$(mktemp -d /tmp/certctl-tarballs.XXXXXX)
app=$work/app
pgids=()
cleanup() {
  local rc=$?
  set +e
  for g in "${pgids[@]}"; do kill -TERM -- "-$g" 2>/dev/null; done
  for g in "${pgids[@]}"; do
    for _ in $(seq 1 50); do kill -0 -- "-$g" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$g" 2>/dev/null
  done
  if [ "$rc" -ne 0 ]; then
    for log in "$work"/*.log; do
      [ -f "$log" ] || continue
      echo "---- last lines of $(basename "$log")" >&2
      tail -n 40 "$log" >&2
    done
  fi
  if [ "${CERTCTL_KEEP_TARBALL_DIR:-}" = 1 ]; then echo "tarballs: kept $work" >&2; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Nothing above the install folder may lend it packages or a workspace.
d=$work
while [ "$d" != / ]; do
  [ ! -e "$d/package.json" ] && [ ! -e "$d/node_modules" ] || fail "$d has a package.json or node_modules"
  d=$(dirname "$d")
done
[ ! -e /package.json ] && [ ! -e /node_modules ] || fail "/ has a package.json or node_modules"

# --- helpers -----------------------------------------------------------------------------------
# JSON field from a file: jget FILE 'v.items.length'
jget() { node -e 'const v = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); const r = new Function("v", "return " + process.argv[2])(v); process.stdout.write(r === undefined || r === null ? "" : String(r))' "$1" "$2"; }
free_port() { node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close() })'; }
# api METHOD PATH [JSON] -> body in $work/res.json, status in $status; fails on a non-2xx answer.
api() {
  local args=(-s -o "$work/res.json" -w '%{http_code}' -X "$1" -H "authorization: Bearer $admin_key")
  [ $# -lt 3 ] || args+=(-H 'content-type: application/json' --data "$3")
  status=$(curl "${args[@]}" "$url$2")
  case $status in 2*) ;; *) fail "$1 $2 answered $status: $(cat "$work/res.json")" ;; esac
}
# start NAME COMMAND...: runs an installed bin in its own process group, through a shell that
# records the bin's exit status. npm exec (npx) runs bins through `sh -c` and does not forward
# SIGTERM, so, like a terminal's Ctrl-C or systemd's control-group kill, stop() signals the group.
start() {
  local name=$1
  shift
  (cd "$app" && exec setsid npx --no-install -c "trap : TERM INT; $*; echo \"[$name exited with status \$?]\"") \
    >"$work/$name.log" 2>&1 &
  pgids+=("$!")
  eval "${name//-/_}_pgid=$!"
}
# stop NAME PGID: SIGTERM to the group; the bin must exit 0 within 30 s.
stop() {
  kill -TERM -- "-$2"
  for _ in $(seq 1 300); do kill -0 -- "-$2" 2>/dev/null || break; sleep 0.1; done
  kill -0 -- "-$2" 2>/dev/null && fail "$1 did not exit within 30 s of SIGTERM"
  grep -q "\[$1 exited with status 0\]" "$work/$1.log" || fail "$1 did not exit cleanly: $(tail -n 3 "$work/$1.log")"
  echo "  $1 stopped cleanly on SIGTERM"
}

# --- 1. manifests ------------------------------------------------------------------------------
phase "check package manifests"
[ -f packages/core/dist/index.js ] || fail "packages are not built: run \`npm run build\` first"
node scripts/check-packages.mjs

# --- 2. pack -----------------------------------------------------------------------------------
phase "npm pack"
mkdir -p "$work/tarballs" "$app"
npm pack --silent --pack-destination "$work/tarballs" \
  -w packages/core -w packages/connectors -w packages/sdk -w packages/agent -w packages/server >/dev/null
tarballs=("$work"/tarballs/*.tgz)
[ "${#tarballs[@]}" -eq 5 ] || fail "expected 5 tarballs, got ${#tarballs[@]}"
for t in "${tarballs[@]}"; do echo "  $(basename "$t") $(($(stat -c %s "$t") / 1024)) KiB"; done

# --- 3. install --------------------------------------------------------------------------------
phase "npm install the tarballs"
cd "$app"
npm init -y >/dev/null
npm install --no-audit --no-fund --loglevel=error "${tarballs[@]}"
npm ls --all >/dev/null || fail "npm ls reports a missing, invalid or extraneous package"
for p in effect @certctl/core; do
  copies=$(npm ls "$p" --all --parseable | sort -u | wc -l)
  [ "$copies" -eq 1 ] || fail "$copies copies of $p are installed (one instance must be shared)"
done
for p in core connectors sdk agent server; do
  resolved=$(node -p "require('./package-lock.json').packages['node_modules/@certctl/$p']?.resolved ?? ''")
  case $resolved in file:*) ;; *) fail "@certctl/$p was not installed from its tarball ($resolved)" ;; esac
done
echo "  $(npm ls --all --parseable | sort -u | wc -l) packages, one effect ($(node -p 'require("effect/package.json").version'))"

# --- 4. runtime imports and the embedding program ----------------------------------------------
phase "import every entry"
node --input-type=module -e '
  for (const name of ["@certctl/core", "@certctl/connectors", "@certctl/sdk", "@certctl/agent", "@certctl/server"]) {
    const m = await import(name)
    if (Object.keys(m).length === 0) throw new Error(`${name} exports nothing`)
    console.log(`  ${name}: ${Object.keys(m).length} exports`)
  }'

phase "embedded engine (examples/installed/embed.mjs)"
cp "$repo/examples/installed/embed.mjs" "$app/embed.mjs"
CERTCTL_DATA_DIR=$work/embed-data node embed.mjs

# --- 5. declarations ---------------------------------------------------------------------------
phase "type-check a consumer (examples/installed/consumer.ts)"
npm install --no-audit --no-fund --loglevel=error --save-dev --save-exact typescript@5.9.3 @types/node@20.19.25
cp "$repo/examples/installed/consumer.ts" "$app/consumer.ts"
cat >tsconfig.json <<'EOF'
{
  "compilerOptions": {
    "module": "NodeNext",
    "moduleResolution": "NodeNext",
    "target": "ES2022",
    "lib": ["ES2023", "DOM"],
    "types": ["node"],
    "strict": true,
    "skipLibCheck": true,
    "noEmit": true
  },
  "files": ["consumer.ts"]
}
EOF
# skipLibCheck off, so certctl's own declarations are checked too (with it on, an unresolvable
# import in a .d.ts silently becomes `any`). Errors in consumer.ts or @certctl/* fail; other
# packages' declaration issues (@effect/sql-pg wants @types/pg) are listed but are not ours.
npx tsc -p tsconfig.json --skipLibCheck false >"$work/tsc.txt" 2>&1 || true
# Any error outside node_modules (consumer.ts, the tsconfig) or inside @certctl/* is ours.
ours=$(grep -E 'error TS' "$work/tsc.txt" | grep -vE '^node_modules/' || true)
ours+=$(grep -E '^node_modules/@certctl/' "$work/tsc.txt" || true)
[ -z "$ours" ] || fail "the consumer does not type-check against the installed declarations:
$ours"
echo "  consumer type-checks (strict, NodeNext); @certctl/* declarations clean with skipLibCheck off"
others=$(grep -cE '^node_modules/.*error TS' "$work/tsc.txt" || true)
[ "$others" -eq 0 ] || echo "  (third-party declarations, not ours: $(grep -oE '^node_modules/(@[^/]+/)?[^/(]+' "$work/tsc.txt" | sort -u | tr '\n' ' ')— $others error(s))"
# A consumer whose own tooling sets the `source` condition still gets the declarations: `types`
# comes first in each exports map, and src/ is not published.
npx tsc -p tsconfig.json --skipLibCheck --customConditions source --traceResolution >"$work/tsc-source.txt" ||
  fail "the consumer breaks with customConditions [\"source\"]"
grep -q "'@certctl/core' was successfully resolved to '$app/node_modules/@certctl/core/dist/types/index.d.ts'" \
  "$work/tsc-source.txt" || fail "@certctl/core did not resolve to its declarations under the source condition"
! grep -E "@certctl/[a-z]+/src/" "$work/tsc-source.txt" || fail "the source condition resolved certctl sources"
echo "  customConditions [\"source\"] still resolves dist/types"

# --- 6. the installed bins ---------------------------------------------------------------------
phase "npx certctl-server (embedded PGlite)"
port=$(free_port)
url=http://127.0.0.1:$port
CERTCTL_DATA_DIR=$work/server-data CERTCTL_LISTEN_ADDR=127.0.0.1:$port start certctl-server certctl-server
for i in $(seq 1 1800); do
  curl -sf "$url/readyz" >/dev/null 2>&1 && break
  kill -0 -- "-$certctl_server_pgid" 2>/dev/null || fail "certctl-server exited before it was ready"
  [ "$i" -lt 1800 ] || fail "certctl-server was not ready within 180 s"
  sleep 0.1
done
admin_key=$(cat "$work/server-data/admin-api-key")
echo "  ready at $url: $(curl -s "$url/readyz")"

phase "register issuer, agent and file target"
api POST /api/v1/issuers '{"id":"local-ca","name":"Built-in CA","type":"local-ca","config":{}}'
api POST /api/v1/agents '{"id":"tarball-agent","name":"tarball agent"}'
agent_key=$(jget "$work/res.json" v.api_key)
[ -n "$agent_key" ] || fail "agent registration returned no api_key"
deploy_dir=$work/deploy
api POST /api/v1/targets "{\"id\":\"tarball-files\",\"name\":\"tarball files\",\"type\":\"file\",\"agent_id\":\"tarball-agent\",\"config\":{\"directory\":\"$deploy_dir\"}}"

phase "npx certctl-agent"
# The agent's local policy: file targets in $deploy_dir only.
printf '{ "file": { "directories": ["%s"] } }\n' "$deploy_dir" >"$work/agent-policy.json"
CERTCTL_SERVER_URL=$url CERTCTL_API_KEY=$agent_key CERTCTL_AGENT_ID=tarball-agent CERTCTL_KEY_DIR=$work/agent-keys \
CERTCTL_AGENT_POLICY=$work/agent-policy.json \
  start certctl-agent certctl-agent

phase "issue and deploy a certificate"
domain=tarball.certctl.test
api POST /api/v1/certificates "{\"id\":\"tarball-cert\",\"domain\":\"$domain\",\"sans\":[\"www.$domain\"],\"issuer_id\":\"local-ca\",\"target_ids\":[\"tarball-files\"],\"renewal_days_before\":30}"
for i in $(seq 1 900); do
  api GET /api/v1/certificates/tarball-cert/deployments
  [ "$(jget "$work/res.json" 'v.items.some((d) => d.status === "success")')" = true ] && break
  kill -0 -- "-$certctl_agent_pgid" 2>/dev/null || fail "certctl-agent exited"
  [ "$i" -lt 900 ] || fail "no successful deployment within 180 s: $(cat "$work/res.json")"
  sleep 0.2
done
api GET /api/v1/certificates/tarball-cert
serial=$(jget "$work/res.json" v.serial)
for f in cert.pem chain.pem fullchain.pem key.pem; do
  [ -s "$deploy_dir/$domain/$f" ] || fail "$deploy_dir/$domain/$f is missing"
done
deployed=$(node -e 'const { X509Certificate } = require("crypto"); console.log(new X509Certificate(require("fs").readFileSync(process.argv[1])).serialNumber.toLowerCase().replace(/^0+/, ""))' "$deploy_dir/$domain/cert.pem")
[ -n "$serial" ] && [ "$deployed" = "$serial" ] || fail "deployed serial $deployed is not the issued $serial"
echo "  deployed and verified: $domain serial $serial in $deploy_dir/$domain"

phase "certctl CLI (sdk bin)"
(
  export CERTCTL_URL=$url CERTCTL_API_KEY=$admin_key
  npx --no-install certctl --help >"$work/cli-help.txt" || fail "certctl --help failed"
  grep -q certs "$work/cli-help.txt" || fail "certctl --help does not list the certs command"
  npx --no-install certctl certs list >"$work/cli-certs.txt" || fail "certctl certs list failed"
  grep -q "$domain" "$work/cli-certs.txt" || fail "certctl certs list does not show $domain: $(cat "$work/cli-certs.txt")"
)
echo "  certctl --help and certctl certs list work"

phase "SIGTERM agent and server"
stop certctl-agent "$certctl_agent_pgid"
stop certctl-server "$certctl_server_pgid"
pgids=()

phase ""
echo "== tarballs: timings"
printf '%s\n' "${timings[@]}"
printf '  %-52s %6.1f s\n' total "$(($(now_ms) - t_start))e-3"
echo "tarballs: OK"
