#!/bin/sh
# Peers for the `nginx` target tests (packages/connectors/test/Nginx.test.ts): Debian's OpenSSH
# server and nginx. The tests start their OWN sshd (as root) and nginx (as the deploy user) on
# 127.0.0.1 ports 20100-20199 under a temp dir, and stop them; this script only installs the
# packages and prepares the machine. Idempotent; must run as root.
set -eu

if [ "$(id -u)" -ne 0 ]; then
  echo "nginx-sshd.sh: must run as root" >&2
  exit 1
fi

DEPLOY_USER=certctl-deploy

need=""
[ -x /usr/sbin/sshd ] || need="$need openssh-server"
command -v ssh-keygen >/dev/null 2>&1 || need="$need openssh-client"
command -v nginx >/dev/null 2>&1 || need="$need nginx"
if [ -n "$need" ]; then
  # Keep the packages' postinst from starting system daemons (port 22/80): the tests run their own.
  policy_added=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    policy_added=1
  fi
  apt-get update
  # shellcheck disable=SC2086 # word splitting of the package list is intended
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need
  [ -z "$policy_added" ] || rm -f /usr/sbin/policy-rc.d
fi

# sshd's privilege-separation directory (normally created by its systemd unit).
mkdir -p /run/sshd
chmod 0755 /run/sshd

# The unprivileged deploy user. Its password field must be `*` (no password, not locked): with
# `UsePAM no`, sshd refuses every login to an account whose field starts with `!`.
if ! getent passwd "$DEPLOY_USER" >/dev/null; then
  useradd --create-home --user-group --shell /bin/sh "$DEPLOY_USER"
fi
if [ "$(getent shadow "$DEPLOY_USER" | cut -d: -f2)" != "*" ]; then
  usermod -p '*' "$DEPLOY_USER"
fi
home="$(getent passwd "$DEPLOY_USER" | cut -d: -f6)"
mkdir -p "$home/.ssh"
chown "$DEPLOY_USER:$DEPLOY_USER" "$home" "$home/.ssh"
chmod 0700 "$home/.ssh"

echo "nginx-sshd: $(/usr/sbin/sshd -V 2>&1 | head -n1); $(nginx -v 2>&1); user $DEPLOY_USER ready"
