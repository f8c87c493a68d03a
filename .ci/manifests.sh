#!/usr/bin/env bash
# CI: check the deployment manifests with the real tools of each topology, where Debian has them.
# The schema validation and structural checks are in deploy/test/Manifests.test.ts (vitest); this
# script adds the tools' own parsers:
#   - docker-compose 1.29 `config` (Debian): interpolation and its bundled Compose Specification
#     schema, with and without the required secrets, and on a deliberately broken copy;
#   - podman-compose 1.0.3 `--dry-run up --no-build` (Debian): the podman commands it would run;
#   - systemd-analyze verify and security --offline (the machine's systemd): every unit directive
#     must be known and valid, and the exposure score must stay low;
#   - kubectl kustomize, when a kubectl is installed: the kustomization builds.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

need=()
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v podman-compose >/dev/null || need+=(podman-compose)
# podman-compose runs the podman binary, which no package it depends on installs.
command -v podman >/dev/null || need+=(podman)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

work=$(mktemp -d)
project="certctl-ci-$$"
cleanup() {
  # Only what podman-compose created for this project (its dry run still creates them).
  podman volume ls -q --filter "label=io.podman.compose.project=$project" 2>/dev/null | xargs -r podman volume rm >/dev/null 2>&1 || true
  podman network ls -q --filter "label=io.podman.compose.project=$project" 2>/dev/null | xargs -r podman network rm >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== compose: docker-compose config"
compose=deploy/compose/docker-compose.yml
cat >"$work/ci.env" <<'EOF'
POSTGRES_PASSWORD=ci-postgres-password
CERTCTL_ENCRYPTION_KEY=ci-encryption-key
CERTCTL_ADMIN_API_KEY=ci-admin-key
CERTCTL_ENROLLMENT_TOKEN=ci-enrollment-token
PGADMIN_DEFAULT_PASSWORD=ci-pgadmin
EOF
docker-compose -f "$compose" --env-file "$work/ci.env" config -q
# (docker-compose 1.29 lists profiled services too; the vitest suite checks the pgadmin profile.)
services=$(docker-compose -f "$compose" --env-file "$work/ci.env" config --services | sort | tr '\n' ' ')
[ "$services" = "certctl-agent certctl-server pgadmin postgres " ] || fail "services: $services"
docker-compose -f "$compose" --env-file "$work/ci.env" config >"$work/config.yml"
grep -q 'CERTCTL_DATABASE_URL: postgres://certctl:ci-postgres-password@postgres:5432/certctl' "$work/config.yml" ||
  fail "CERTCTL_DATABASE_URL is not built from POSTGRES_PASSWORD"
# The example env file leaves the secrets empty: compose must refuse to start.
if docker-compose -f "$compose" --env-file deploy/compose/.env.example config -q 2>"$work/err"; then
  fail "compose accepted empty secrets"
fi
grep -q "POSTGRES_PASSWORD\|CERTCTL_ENCRYPTION_KEY\|CERTCTL_ADMIN_API_KEY" "$work/err" || fail "unclear error: $(cat "$work/err")"
# And the parser is able to fail on a broken file.
sed 's/condition: service_healthy/condition: service_ready/' "$compose" >"$work/broken.yml"
if docker-compose -f "$work/broken.yml" --env-file "$work/ci.env" config -q 2>/dev/null; then
  fail "docker-compose accepted an invalid depends_on condition"
fi
echo "ok"

echo "== compose: podman-compose --dry-run"
(
  set -a
  # shellcheck disable=SC1091
  . "$work/ci.env"
  set +a
  cd deploy/compose
  podman-compose -p "$project" --dry-run up --no-build -d
) >"$work/podman.out" 2>&1 || { cat "$work/podman.out"; fail "podman-compose"; }
for svc in postgres certctl-server certctl-agent; do
  grep -q "podman run --name=${project}_${svc}_1 " "$work/podman.out" || { cat "$work/podman.out"; fail "no podman run for $svc"; }
done
grep -q -- "-v ${project}_agent-keys:/var/lib/certctl-agent" "$work/podman.out" || fail "agent key volume"
echo "ok"

echo "== systemd: systemd-analyze verify / security"
mkdir -p "$work/units"
printf '#!/bin/sh\nexit 0\n' >"$work/units/stub" && chmod +x "$work/units/stub"
for unit in certctl-server certctl-agent; do
  # The bins are not installed here: point ExecStart at a stub, keep every other line.
  grep -q '^ExecStart=/usr/local/bin/'"$unit"'$' "deploy/systemd/$unit.service" || fail "$unit ExecStart"
  sed "s#^ExecStart=.*#ExecStart=$work/units/stub#" "deploy/systemd/$unit.service" >"$work/units/$unit.service"
done
(cd "$work/units" && systemd-analyze verify certctl-server.service certctl-agent.service) >"$work/verify.out" 2>&1 ||
  { cat "$work/verify.out"; fail "systemd-analyze verify"; }
# verify only warns about unknown or invalid directives: any output is a failure here.
if [ -s "$work/verify.out" ]; then cat "$work/verify.out"; fail "systemd-analyze verify printed warnings"; fi
printf '[Service]\nExecStart=%s\nProtectSystm=strict\n' "$work/units/stub" >"$work/units/broken.service"
(cd "$work/units" && systemd-analyze verify broken.service) 2>&1 | grep -q "Unknown key" ||
  fail "systemd-analyze verify did not flag an unknown directive"
for unit in certctl-server certctl-agent; do
  (cd "$work/units" && systemd-analyze security --offline=true --threshold=25 "$unit.service" >"$work/security.out" 2>&1) ||
    { tail -3 "$work/security.out"; fail "$unit exposure above 2.5"; }
  tail -1 "$work/security.out"
done
echo "ok"

echo "== kubernetes: kustomize build"
if command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
  cp -r deploy/kubernetes "$work/k8s"
  for f in "$work"/k8s/secrets/*.env.example; do cp "$f" "${f%.example}"; done
  kubectl kustomize "$work/k8s" >"$work/k8s.yaml"
  n=$(grep -c '^kind:' "$work/k8s.yaml")
  [ "$n" -ge 14 ] || fail "kustomize rendered $n objects"
  echo "ok ($n objects)"
else
  echo "skipped: no kubectl here (the vitest suite validates every manifest against the schemas)"
fi
