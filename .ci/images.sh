#!/usr/bin/env bash
# CI: build the certctl-server and certctl-agent container images from the Dockerfile and run them
# for real with podman: the server image on this machine's PostgreSQL and the agent image together
# issue a certificate and deploy it into a host directory; then both stop cleanly on SIGTERM.
#
# No Docker daemon and no image registry here: the Node 20 base image is assembled locally
# (.ci/base-image.sh, cached) and passed as NODE_IMAGE. Containers run with the flags that work on
# this machine: cgroupfs, no default ulimits, runc, host network, chroot isolation for builds.
#
# Environment: CERTCTL_TEST_PG_HOST/PORT/USER (default 127.0.0.1/5432/postgres),
# CERTCTL_REBUILD_BASE=1 to rebuild the base image, CERTCTL_IMAGES_KEEP=1 to keep the temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

ms() { date +%s%3N; }
started=$(ms)
last=$started
secs() { printf '%d.%d s' $(($1 / 1000)) $((($1 % 1000) / 100)); }
phase() {
  local now
  now=$(ms)
  echo "   ($(secs $((now - last))))"
  echo "== images: $1"
  last=$now
}
printf '== images: tools\n'

# ---------------------------------------------------------------------------------------------
# Tools, and the containers.conf that works here.
if ! command -v podman >/dev/null || ! command -v buildah >/dev/null || ! command -v runc >/dev/null ||
  ! command -v debootstrap >/dev/null; then
  install_tools() { apt-get install -y -qq --no-install-recommends podman buildah runc debootstrap >/dev/null; }
  install_tools || { apt-get update -qq && install_tools; }
fi

work=$(mktemp -d /tmp/certctl-images.XXXXXX)
chmod 0755 "$work"
export CONTAINERS_CONF="$work/containers.conf"
cat >"$CONTAINERS_CONF" <<'EOF'
[engine]
cgroup_manager = "cgroupfs"

[containers]
default_ulimits = []
EOF
# overlay works on this machine's ext4; where it does not (e.g. inside another overlay), set
# CERTCTL_PODMAN_STORAGE_DRIVER=vfs.
if [ -n "${CERTCTL_PODMAN_STORAGE_DRIVER:-}" ]; then export STORAGE_DRIVER="$CERTCTL_PODMAN_STORAGE_DRIVER"; fi

# podman 4.3 schedules HEALTHCHECKs with systemd timers and logs an error on every run, stop and
# rm when there is no systemd (as here), even with --health-interval disable. The checks still run
# on demand (`podman healthcheck run`), so those lines only are dropped.
pm() {
  local rc=0
  podman "$@" 2>"$work/podman.err" || rc=$?
  grep -v 'unable to get systemd connection' "$work/podman.err" >&2 || true
  return "$rc"
}

pg_host=${CERTCTL_TEST_PG_HOST:-127.0.0.1}
pg_port=${CERTCTL_TEST_PG_PORT:-5432}
pg_user=${CERTCTL_TEST_PG_USER:-postgres}
db="certctl_images_$$"
server_ctr="certctl-images-server-$$"
agent_ctr="certctl-images-agent-$$"
db_created=""

dump_logs() {
  for c in "$server_ctr" "$agent_ctr"; do
    if podman container exists "$c" 2>/dev/null; then
      echo "---- podman logs $c (last 60 lines)"
      podman logs --tail 60 "$c" 2>&1 || true
    fi
  done
}
cleanup() {
  local rc=$?
  set +e
  [ "$rc" -eq 0 ] || dump_logs
  podman rm -f -v -t 5 "$agent_ctr" "$server_ctr" >/dev/null 2>&1
  rm -f "$work/podman.err"
  [ -z "$db_created" ] || dropdb -h "$pg_host" -p "$pg_port" -U "$pg_user" --force --if-exists "$db"
  if [ -n "${CERTCTL_IMAGES_KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
phase "base image localhost/certctl-node:20"
bash .ci/base-image.sh

# ---------------------------------------------------------------------------------------------
# Build arguments CI needs and a user does not: the local base image; the machine's extra CA
# bundle when npm reaches the registry through a TLS-intercepting proxy; and the machine's npm
# cache, mounted for RUN steps only (never part of a layer) so npm does not fetch again what the
# host's `npm ci` just fetched.
build_args=(--isolation chroot --network host --format docker --layers
  --build-arg NODE_IMAGE=localhost/certctl-node:20)
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f "$NODE_EXTRA_CA_CERTS" ]; then
  build_args+=(--build-arg "NODE_EXTRA_CA_CERTS=$NODE_EXTRA_CA_CERTS" -v "$NODE_EXTRA_CA_CERTS:$NODE_EXTRA_CA_CERTS:ro")
fi
npm_cache=$(npm config get cache 2>/dev/null || true)
if [ -n "$npm_cache" ] && [ -d "$npm_cache" ]; then build_args+=(-v "$npm_cache:/root/.npm"); fi

phase "podman build --target server"
podman build "${build_args[@]}" --target server -t localhost/certctl-server:ci . >"$work/build-server.log" 2>&1 ||
  { tail -60 "$work/build-server.log"; exit 1; }
phase "podman build --target agent"
podman build "${build_args[@]}" --target agent -t localhost/certctl-agent:ci . >"$work/build-agent.log" 2>&1 ||
  { tail -60 "$work/build-agent.log"; exit 1; }

phase "image contents"
podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'certctl-(node|server|agent)' | sed 's/^/   /'
for image in server agent; do
  # Non-root, exec-form entrypoint, healthcheck; no dev dependencies, no sources, no npm cache.
  user=$(podman image inspect --format '{{.Config.User}}' "localhost/certctl-$image:ci")
  [ "$user" = "10001:10001" ] || { echo "certctl-$image runs as '$user', not 10001:10001"; exit 1; }
  healthcheck=$(podman image inspect --format '{{json .Config.Healthcheck}}' "localhost/certctl-$image:ci")
  [[ "$healthcheck" == *'"CMD"'* ]] || { echo "certctl-$image has no HEALTHCHECK ($healthcheck)"; exit 1; }
  pm run --rm --runtime runc --ulimit host --network host --entrypoint /bin/sh "localhost/certctl-$image:ci" -c '
    set -e
    for p in typescript vitest tsup @biomejs @types esbuild; do
      if [ -e "/app/node_modules/$p" ]; then echo "dev dependency $p in the image"; exit 1; fi
    done
    if find /app/node_modules/@certctl -name "*.ts" ! -name "*.d.ts" | grep -q .; then echo "sources in the image"; exit 1; fi
    if [ -e /root/.npm ] || [ -e "$HOME/.npm" ]; then echo "npm cache in the image"; exit 1; fi
    test "$(id -u)" = 10001
  '
done

# ---------------------------------------------------------------------------------------------
phase "run certctl-server on PostgreSQL"
pg_isready -h "$pg_host" -p "$pg_port" -q || { echo "PostgreSQL is not ready at $pg_host:$pg_port"; exit 1; }
createdb -h "$pg_host" -p "$pg_port" -U "$pg_user" "$db"
db_created=1

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
port=$(free_port)
health_port=$(free_port)
url="http://127.0.0.1:$port"
CERTCTL_ENCRYPTION_KEY=$(node -e 'console.log(require("crypto").randomBytes(32).toString("base64"))')
CERTCTL_ADMIN_API_KEY="cct_images_$(node -e 'console.log(require("crypto").randomBytes(24).toString("base64url"))')"
CERTCTL_DATABASE_URL="postgres://$pg_user@$pg_host:$pg_port/$db"
export CERTCTL_ENCRYPTION_KEY CERTCTL_ADMIN_API_KEY CERTCTL_DATABASE_URL

# State directories on the host, owned by the images' user as a volume would be.
install -d -m 0700 -o 10001 -g 10001 "$work/server-data" "$work/agent-keys" "$work/deploy"

# Secrets pass by name (-e VAR), so they never appear on a command line.
pm run -d --name "$server_ctr" --runtime runc --ulimit host --network host \
  -e CERTCTL_DATABASE_URL -e CERTCTL_ENCRYPTION_KEY -e CERTCTL_ADMIN_API_KEY \
  -e CERTCTL_LISTEN_ADDR="127.0.0.1:$port" -e CERTCTL_SHUTDOWN_GRACE="10 seconds" \
  -v "$work/server-data:/var/lib/certctl" \
  localhost/certctl-server:ci >/dev/null

# api METHOD PATH [JSON] [KEY] → prints the JSON body; fails unless the status is 2xx.
api() {
  node -e '
    const [method, path, body, key] = process.argv.slice(1)
    fetch(process.env.URL + path, {
      method,
      headers: { authorization: `Bearer ${key || process.env.CERTCTL_ADMIN_API_KEY}`, ...(body ? { "content-type": "application/json" } : {}) },
      body: body || undefined
    }).then(async (r) => {
      const text = await r.text()
      if (!r.ok) { console.error(`${method} ${path} → ${r.status}: ${text.slice(0, 2000)}`); process.exit(1) }
      process.stdout.write(text)
    }, (e) => { console.error(`${method} ${path}: ${e.cause?.code ?? e.message}`); process.exit(1) })' "$@"
}
export URL="$url"
# json FIELD-EXPRESSION < body → the value (e.g. json 'b.api_key').
json() { node -e 'let s="";process.stdin.on("data",(d)=>s+=d).on("end",()=>{const b=JSON.parse(s);const v=eval(process.argv[1]);console.log(typeof v==="string"?v:JSON.stringify(v))})' "$1"; }
wait_for() { # SECONDS DESCRIPTION COMMAND...
  local deadline=$(($(date +%s) + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then echo "timed out waiting for $what"; exit 1; fi
    sleep 0.5
  done
}
running() { [ "$(podman inspect --format '{{.State.Running}}' "$1")" = true ]; }

# A container that exits ends the wait at once (its logs are printed on the way out).
ready() { running "$server_ctr" || exit 1; node -e 'fetch(process.env.URL+"/readyz").then((r)=>process.exit(r.ok?0:1),()=>process.exit(1))'; }
wait_for 120 "the server's /readyz" ready
[ "$(podman exec "$server_ctr" id -u)" = 10001 ] || { echo "server process is not uid 10001"; exit 1; }
# The dashboard ships inside the server's tarball (dist/ui) and is served at /.
node -e 'fetch(process.env.URL + "/").then(async (r) => {
  const type = r.headers.get("content-type") ?? ""
  if (r.status !== 200 || !type.startsWith("text/html")) { console.error(`GET / → ${r.status} ${type}`); process.exit(1) }
  console.log("   dashboard served at /")
})'
phase "server HEALTHCHECK"
wait_for 60 "the server's HEALTHCHECK" podman healthcheck run "$server_ctr"
podman inspect --format '   server health: {{.State.Health.Status}}' "$server_ctr" 2>/dev/null || true

# ---------------------------------------------------------------------------------------------
phase "register agent, issuer, file target; run certctl-agent"
agent_id="images-agent"
CERTCTL_API_KEY=$(api POST /api/v1/agents '{"id":"images-agent","name":"container image check"}' | json 'b.api_key')
export CERTCTL_API_KEY
api POST /api/v1/issuers '{"id":"local-ca","name":"Built-in CA","type":"local-ca","config":{}}' >/dev/null
# The file target writes inside a volume mounted into the agent container.
api POST /api/v1/targets \
  '{"id":"images-files","name":"files in a volume","type":"file","agent_id":"images-agent","config":{"directory":"/srv/certctl/deploy"}}' >/dev/null

# A read-only root filesystem: the agent writes only in its key directory (and where its targets deploy).
pm run -d --name "$agent_ctr" --runtime runc --ulimit host --network host --read-only \
  -e CERTCTL_SERVER_URL="$url" -e CERTCTL_AGENT_ID="$agent_id" -e CERTCTL_API_KEY \
  -e CERTCTL_HEALTH_LISTEN="127.0.0.1:$health_port" \
  -v "$work/agent-keys:/var/lib/certctl-agent" -v "$work/deploy:/srv/certctl/deploy" \
  localhost/certctl-agent:ci >/dev/null
agent_healthy() { running "$agent_ctr" || exit 1; podman healthcheck run "$agent_ctr"; }
wait_for 60 "the agent's HEALTHCHECK" agent_healthy
[ "$(podman exec "$agent_ctr" id -u)" = 10001 ] || { echo "agent process is not uid 10001"; exit 1; }
podman exec "$agent_ctr" node -e \
  'fetch(`http://${process.env.CERTCTL_HEALTH_LISTEN}/healthz`).then(async(r)=>console.log(`   agent /healthz ${r.status} ${await r.text()}`))'

# ---------------------------------------------------------------------------------------------
phase "issue and deploy a certificate"
domain="images.certctl.test"
api POST /api/v1/certificates \
  "{\"id\":\"images-cert\",\"domain\":\"$domain\",\"sans\":[\"www.$domain\"],\"issuer_id\":\"local-ca\",\"target_ids\":[\"images-files\"],\"renewal_days_before\":30}" >/dev/null
deployed() { api GET /api/v1/certificates/images-cert/deployments | json 'b.items.find((d)=>d.status==="success") ?? (()=>{throw 0})()'; }
wait_for 180 "a successful deployment of images-cert" deployed
echo "   deployment: $(deployed)"
serial=$(api GET /api/v1/certificates/images-cert | json 'b.serial')

dir="$work/deploy/$domain"
for f in cert.pem chain.pem fullchain.pem key.pem; do [ -s "$dir/$f" ] || { echo "missing $dir/$f"; exit 1; }; done
# The deployed certificate is the one the control plane issued, for the right names.
node -e '
  const { X509Certificate } = require("crypto")
  const c = new X509Certificate(require("fs").readFileSync(process.argv[1]))
  const norm = (s) => s.replace(/:/g, "").toUpperCase().replace(/^0+/, "")
  const want = norm(process.argv[2])
  if (norm(c.serialNumber) !== want) { console.error(`serial ${c.serialNumber} != ${want}`); process.exit(1) }
  if (!c.subjectAltName.includes("DNS:" + process.argv[3])) { console.error(`SAN ${c.subjectAltName}`); process.exit(1) }
  console.log(`   deployed cert.pem: serial ${c.serialNumber}, ${c.subjectAltName}`)' "$dir/cert.pem" "$serial" "$domain"
key_stat=$(stat -c '%a %u' "$dir/key.pem")
[ "$key_stat" = "600 10001" ] || { echo "key.pem is '$key_stat' (mode uid), want '600 10001'"; exit 1; }
echo "   key.pem: mode 0600, owner uid 10001"
# The agent's own copy of the key stays in its key volume, 0600 as well.
[ -n "$(find "$work/agent-keys" -name key.pem -perm 0600 -user 10001)" ] ||
  { echo "no 0600 key.pem owned by 10001 in the agent's key dir"; exit 1; }

# ---------------------------------------------------------------------------------------------
phase "podman stop: SIGTERM drains"
for c in "$agent_ctr" "$server_ctr"; do
  pm stop -t 30 "$c" >/dev/null
  code=$(podman inspect --format '{{.State.ExitCode}}' "$c")
  [ "$code" = 0 ] || { echo "$c exited with $code after SIGTERM"; exit 1; }
  echo "   $c exited 0"
done
podman logs "$server_ctr" >"$work/server.log" 2>&1
grep -q "released job leases" "$work/server.log" || { echo "the server did not log releasing its job leases"; exit 1; }
echo "   server log: released job leases"

phase "done"
echo "== images: passed in $(secs $(($(ms) - started)))"
