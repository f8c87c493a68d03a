#!/usr/bin/env bash
# Peers of the acme issuer tests (packages/connectors/test/Acme*.test.ts) and bench/acme-clients.mjs.
# Idempotent: installs only what is missing. Nothing is started here: each test file starts its
# own Pebble (`pebble -config <tmp>/pebble.json -dnsserver 127.0.0.1:<port>`) and bind9
# (`named -g -c <tmp>/named.conf -u bind`) on ports 20400-20499 and stops them afterwards.
set -euo pipefail

need=()
command -v pebble >/dev/null 2>&1 || need+=(pebble)
command -v named >/dev/null 2>&1 || need+=(bind9)
command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
# The bench compares against these two CLIs; the tests do not need them.
command -v lego >/dev/null 2>&1 || need+=(lego)
command -v certbot >/dev/null 2>&1 || need+=(certbot)

if ((${#need[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# named drops privileges to `bind` (created by the bind9 package) when started as root.
id bind >/dev/null 2>&1 || { echo "acme peers: user 'bind' missing after installing bind9" >&2; exit 1; }
# Debian's bind9 service may have started on :53; the tests do not use it, so leave it alone.
echo "acme peers: pebble $(dpkg-query -W -f='${Version}' pebble 2>/dev/null || echo '?'), bind9 $(named -v 2>/dev/null | awk '{print $2}')"
