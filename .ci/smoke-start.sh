#!/usr/bin/env bash
# The README's first command, exactly as a new user runs it: a fresh clone in a temporary folder,
# `npm ci && npm start` until the deployed certificate is printed, Ctrl-C, then a second
# `npm start` that must reuse the state of the first.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/certctl-smoke.XXXXXX)"
log="$work/start.log"
pgid=""

cleanup() {
  if [ -n "$pgid" ]; then kill -KILL -- "-$pgid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

phase() { printf '%s  %s\n' "$(date +%T)" "$*"; }
elapsed() { echo "$(($(date +%s) - $1)) s"; }

# Runs `npm start` in its own process group (a terminal's foreground job), waits for `$1` in its
# output, then sends SIGINT to the whole group as Ctrl-C does and waits for a clean exit.
start_until() {
  local expect="$1" t0
  t0=$(date +%s)
  : >"$log"
  (cd "$work/certctl" && exec setsid npm start >"$log" 2>&1) &
  local pid=$!
  pgid=$pid
  for _ in $(seq 1 600); do
    if grep -q "Press Ctrl-C to stop." "$log"; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      cat "$log"
      echo "npm start exited before printing the deployed certificate"
      return 1
    fi
    sleep 1
  done
  cat "$log"
  grep -q "Press Ctrl-C to stop." "$log" || { echo "npm start did not finish within 600 s"; return 1; }
  grep -Eq "$expect" "$log" || { echo "npm start output lacks: $expect"; return 1; }
  grep -Eq "deployed +yes, verified" "$log" || { echo "the certificate was not deployed and verified"; return 1; }
  grep -Eq "serial +[0-9a-f]{16,}" "$log" || { echo "no serial printed"; return 1; }
  phase "ready after $(elapsed "$t0")"
  if [ -n "${2:-}" ]; then "$2"; fi
  phase "sending Ctrl-C (SIGINT to the process group)"
  kill -INT -- "-$pid"
  local rc=0
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "npm start did not stop within 30 s of Ctrl-C"
    return 1
  fi
  wait "$pid" || rc=$?
  pgid=""
  grep -q "stopped. State is kept" "$log" || { echo "no clean stop message"; return 1; }
  # Nothing of the group may outlive Ctrl-C (server, agent, PGlite worker).
  if pgrep -g "$pid" >/dev/null 2>&1; then
    echo "processes survived Ctrl-C:"
    pgrep -a -g "$pid"
    return 1
  fi
  phase "stopped (exit $rc) after $(elapsed "$t0") in all"
}

# While the first start runs, the commands the READMEs show against it must work as shown: the
# CLI from the bin npm linked at install time, and the SDK example.
readme_commands() {
  local dir="$work/certctl" key url
  key=$(cat "$dir/.certctl/data/admin-api-key")
  url=$(grep -o "control plane ready at http://[0-9.:]*" "$log" | awk '{print $NF}')
  phase "npx certctl certs list (README: CLI)"
  (cd "$dir" && CERTCTL_URL="$url" CERTCTL_API_KEY="$key" npx certctl certs list) | tee "$work/cli.out"
  grep -q "demo-certificate" "$work/cli.out" || { echo "the CLI did not list the demo certificate"; return 1; }
  phase "examples/sdk-automation.ts (examples/README.md)"
  (cd "$dir" && CERTCTL_URL="$url" CERTCTL_API_KEY="$key" \
    node --import tsx --conditions=source examples/sdk-automation.ts) | tee "$work/sdk.out"
  grep -Eq "target demo-files: success" "$work/sdk.out" || { echo "the SDK example did not deploy"; return 1; }
}

t0=$(date +%s)
phase "fresh clone of $(git -C "$repo" rev-parse --short HEAD) into $work/certctl"
git clone -q "$repo" "$work/certctl"

phase "npm ci"
(cd "$work/certctl" && npm ci --no-audit --no-fund >"$work/npm-ci.log" 2>&1) || {
  tail -50 "$work/npm-ci.log"
  exit 1
}
phase "npm ci done after $(elapsed "$t0")"

phase "first npm start (builds, issues and deploys a certificate)"
start_until "Created certificate demo-certificate" readme_commands
cert="$work/certctl/.certctl/deploy/demo.certctl.test/cert.pem"
key="$work/certctl/.certctl/deploy/demo.certctl.test/key.pem"
[ -s "$cert" ] || { echo "no deployed certificate at $cert"; exit 1; }
openssl x509 -in "$cert" -noout -subject -ext subjectAltName
[ "$(stat -c %a "$key")" = "600" ] || { echo "deployed key is not 0600"; exit 1; }
serial1=$(openssl x509 -in "$cert" -noout -serial)

phase "second npm start (must reuse the state)"
start_until "Reusing certificate demo-certificate"
serial2=$(openssl x509 -in "$cert" -noout -serial)
[ "$serial1" = "$serial2" ] || { echo "the second start issued a new certificate ($serial1 → $serial2)"; exit 1; }
phase "smoke test passed in $(elapsed "$t0")"
