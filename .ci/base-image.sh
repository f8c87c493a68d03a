#!/usr/bin/env bash
# Assemble the local Node 20 base image `localhost/certctl-node:20` that CI passes to the
# Dockerfile as NODE_IMAGE. No image registry is reachable here, so a stock node:20 image cannot
# be pulled: this builds the same thing from Debian's bookworm packages (debootstrap minbase) plus
# this machine's own node binary and npm. Cached: does nothing when the image already exists
# (CERTCTL_REBUILD_BASE=1 forces a rebuild).
#
# Expects podman and debootstrap installed and CONTAINERS_CONF set (see .ci/images.sh).
set -euo pipefail

image="${CERTCTL_NODE_IMAGE:-localhost/certctl-node:20}"
mirror="${CERTCTL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ -z "${CERTCTL_REBUILD_BASE:-}" ] && podman image exists "$image"; then
  echo "base image $image exists (cached)"
  exit 0
fi

node_bin="$(command -v node)"
node_bin="$(readlink -f "$node_bin")"
case "$("$node_bin" --version)" in
  v20.*) ;;
  *) echo "base-image: node 20 is required on this machine, found $("$node_bin" --version)" >&2; exit 1 ;;
esac
# npm's package directory: the npm on PATH is a link to <dir>/bin/npm-cli.js.
npm_dir="$(cd "$(dirname "$(readlink -f "$(command -v npm)")")/.." && pwd)"
[ -f "$npm_dir/package.json" ] || { echo "base-image: npm package not found at $npm_dir" >&2; exit 1; }

root="$(mktemp -d /var/tmp/certctl-node-rootfs.XXXXXX)"
trap 'rm -rf "$root"' EXIT

echo "debootstrap --variant=minbase bookworm ($mirror)"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
  tail -30 "$root.log" >&2
  rm -f "$root.log"
  exit 1
}
rm -f "$root.log"

# Node and npm where the official node image has them.
install -D -m 0755 "$node_bin" "$root/usr/local/bin/node"
mkdir -p "$root/usr/local/lib/node_modules"
cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"

# The machine's node is dynamically linked; check that the rootfs has all it needs.
chroot "$root" /usr/local/bin/node -e 'process.exit(process.versions.node.startsWith("20.") ? 0 : 1)'
chroot "$root" /usr/local/bin/npm --version >/dev/null

# Trim what a runtime base does not need (the official slim image does the same).
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/* "$root"/tmp/* "$root"/root/.npm
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true

tar -C "$root" --numeric-owner -c . | podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV NODE_VERSION='"$("$node_bin" --version | tr -d v)" \
  --change 'CMD ["node"]' \
  - "$image" >/dev/null
echo "built base image $image"
