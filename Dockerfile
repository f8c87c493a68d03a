# certctl reference images: the control plane and the agent.
#
#   docker build --target server -t certctl-server .
#   docker build --target agent  -t certctl-agent .
#
# NODE_IMAGE is any Node 20 image with npm (the stock one by default; CI passes one it assembles
# locally, see .ci/images.sh). Behind a TLS-intercepting proxy, pass its CA bundle for the build
# with --build-arg NODE_EXTRA_CA_CERTS=<path inside the build> and a mount of that file; it is
# used by npm during the build only and is not kept in the images.
ARG NODE_IMAGE=node:20-bookworm-slim

# ---------------------------------------------------------------------------------------------
# build: install the workspace, build every package, and pack the publishable ones exactly as
# npm would publish them. The runtime images install those tarballs, nothing else.
FROM ${NODE_IMAGE} AS build
ARG NODE_EXTRA_CA_CERTS
WORKDIR /src
# Manifests first, so that the dependency layer is reused while only sources change.
COPY package.json package-lock.json tsconfig.base.json tsconfig.json ./
COPY packages/core/package.json packages/core/
COPY packages/connectors/package.json packages/connectors/
COPY packages/sdk/package.json packages/sdk/
COPY packages/sdk/bin packages/sdk/bin
COPY packages/agent/package.json packages/agent/
COPY packages/agent/bin packages/agent/bin
COPY packages/server/package.json packages/server/
COPY packages/server/bin packages/server/bin
COPY packages/test-support/package.json packages/test-support/
COPY examples/package.json examples/
# No install scripts are needed to build (esbuild runs from its platform package without one).
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY packages packages
# The staged workspace build that npm run build runs.
COPY scripts/build.mjs scripts/
RUN npm run build
# Pack, then list for each image the tarballs it needs: its own and the @certctl packages it
# depends on, transitively. Anything else comes from the registry through the lockfile-free
# install below, like a user's `npm install`.
RUN mkdir /pkgs \
 && npm pack --silent --pack-destination /pkgs \
      -w packages/core -w packages/connectors -w packages/sdk -w packages/agent -w packages/server >/dev/null \
 && node -e ' \
      const fs = require("fs"); \
      const dirs = ["core", "connectors", "sdk", "agent", "server"]; \
      const pkg = Object.fromEntries(dirs.map((d) => { const p = JSON.parse(fs.readFileSync(`packages/${d}/package.json`, "utf8")); return [p.name, p]; })); \
      const tgz = (p) => `/pkgs/${p.name.replace(/^@/, "").replace("/", "-")}-${p.version}.tgz`; \
      for (const app of ["@certctl/server", "@certctl/agent"]) { \
        const need = new Set(); \
        const visit = (n) => { if (need.has(n)) return; need.add(n); \
          for (const d of Object.keys({ ...pkg[n].dependencies, ...pkg[n].peerDependencies })) if (pkg[d]) visit(d); }; \
        visit(app); \
        const files = [...need].map((n) => tgz(pkg[n])); \
        for (const f of files) if (!fs.existsSync(f)) throw new Error(`missing ${f}`); \
        fs.writeFileSync(`/pkgs/${app.split("/")[1]}.list`, files.join(" ")); \
      }' \
 && echo "server: $(cat /pkgs/server.list)" && echo "agent: $(cat /pkgs/agent.list)"

# ---------------------------------------------------------------------------------------------
# Production dependencies of each image, installed from the tarballs (no dev dependencies, no
# sources, no install scripts). Only /app is carried over, so npm's cache stays behind.
FROM ${NODE_IMAGE} AS server-modules
ARG NODE_EXTRA_CA_CERTS
WORKDIR /app
COPY --from=build /pkgs /pkgs
RUN echo '{"name":"certctl-server-image","private":true}' >package.json \
 && npm install --omit=dev --ignore-scripts --no-audit --no-fund --no-package-lock $(cat /pkgs/server.list) \
 && test -f node_modules/@certctl/server/dist/bin.js

FROM ${NODE_IMAGE} AS agent-modules
ARG NODE_EXTRA_CA_CERTS
WORKDIR /app
COPY --from=build /pkgs /pkgs
RUN echo '{"name":"certctl-agent-image","private":true}' >package.json \
 && npm install --omit=dev --ignore-scripts --no-audit --no-fund --no-package-lock $(cat /pkgs/agent.list) \
 && test -f node_modules/@certctl/agent/dist/bin.js \
 && test -f node_modules/@certctl/agent/bin/certctl-agent.js

# ---------------------------------------------------------------------------------------------
# certctl-server: the control plane. PostgreSQL through CERTCTL_DATABASE_URL (with
# CERTCTL_ENCRYPTION_KEY and CERTCTL_ADMIN_API_KEY); without it, embedded PGlite in the volume.
FROM ${NODE_IMAGE} AS server
RUN groupadd --system --gid 10001 certctl \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/certctl --no-create-home \
      --shell /usr/sbin/nologin certctl \
 && install -d -m 0700 -o 10001 -g 10001 /var/lib/certctl
COPY --from=server-modules /app /app
ENV NODE_ENV=production \
    CERTCTL_LISTEN_ADDR=0.0.0.0:8443 \
    CERTCTL_DATA_DIR=/var/lib/certctl
WORKDIR /var/lib/certctl
USER 10001:10001
VOLUME ["/var/lib/certctl"]
EXPOSE 8443
# Probes /healthz on the address the server listens on (loopback when it listens on all). With
# CERTCTL_TLS_* the probe speaks HTTPS to itself and skips verification: the certificate names the
# public host, not 127.0.0.1, and the probe never leaves the container.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "const a=process.env.CERTCTL_LISTEN_ADDR||'0.0.0.0:8443',i=a.lastIndexOf(':'),h=a.slice(0,i).replace(/^\\[|\\]$/g,''),t=!!process.env.CERTCTL_TLS_CERT_FILE;require(t?'https':'http').get({host:['','0.0.0.0','::'].includes(h)?'127.0.0.1':h,port:+a.slice(i+1),path:'/healthz',timeout:4000,rejectUnauthorized:false},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1)).on('timeout',()=>process.exit(1))"]
# node is PID 1 (exec form): SIGTERM reaches the server, which stops taking work, gives its job
# leases back and exits within CERTCTL_SHUTDOWN_GRACE.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/node_modules/@certctl/server/dist/bin.js"]

# ---------------------------------------------------------------------------------------------
# certctl-agent: keys are generated and kept in CERTCTL_KEY_DIR (a volume); mount the directories
# its targets write to. Needs CERTCTL_SERVER_URL, CERTCTL_AGENT_ID and CERTCTL_API_KEY.
FROM ${NODE_IMAGE} AS agent
RUN groupadd --system --gid 10001 certctl \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/certctl-agent --no-create-home \
      --shell /usr/sbin/nologin certctl \
 && install -d -m 0700 -o 10001 -g 10001 /var/lib/certctl-agent \
 && install -d -m 0755 /etc/certctl \
 && printf '%s\n' '{ "file": { "directories": ["/srv/certctl"] } }' >/etc/certctl/agent-policy.json
COPY --from=agent-modules /app /app
# The agent's local policy (root-owned, read-only for the agent): `file` targets under
# /srv/certctl only, key mode 0600, no reload command, no other target type. Mount your own file
# over it (or point CERTCTL_AGENT_POLICY elsewhere) to allow more.
# Memory (bench/README.md "Memory"): a 2 MB V8 young generation instead of up to 16 MB per semi-space
# (the agent allocates little; a scavenge then costs well under a millisecond), and glibc handing
# freed memory back to the system (module loading leaves megabytes free but kept otherwise). The
# entrypoint is the package's bin, as npx and the systemd unit run it: it also turns off V8's
# optimizing compilers (about 5 MB of an idle agent's RSS; CERTCTL_AGENT_JIT=on keeps them).
ENV NODE_ENV=production \
    NODE_OPTIONS=--max-semi-space-size=2 \
    MALLOC_TRIM_THRESHOLD_=65536 \
    CERTCTL_KEY_DIR=/var/lib/certctl-agent \
    CERTCTL_AGENT_POLICY=/etc/certctl/agent-policy.json \
    CERTCTL_HEALTH_LISTEN=127.0.0.1:9090
WORKDIR /var/lib/certctl-agent
USER 10001:10001
VOLUME ["/var/lib/certctl-agent"]
# 503 once the control plane has not answered for three heartbeat intervals.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "const a=process.env.CERTCTL_HEALTH_LISTEN;if(!a){console.error('CERTCTL_HEALTH_LISTEN is unset: no health endpoint (run with --no-healthcheck)');process.exit(1)}const i=a.lastIndexOf(':'),h=a.slice(0,i).replace(/^\\[|\\]$/g,'');require('http').get({host:['0.0.0.0','::'].includes(h)?'127.0.0.1':h,port:+a.slice(i+1),path:'/healthz',timeout:4000},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1)).on('timeout',()=>process.exit(1))"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/node_modules/@certctl/agent/bin/certctl-agent.js"]
