#!/bin/bash
# restarts scratch server
cd /work/main
[ -f /tmp/h3/server.pid ] && kill $(cat /tmp/h3/server.pid) 2>/dev/null; sleep 1
CERTCTL_DATABASE_URL=postgres://postgres@127.0.0.1:5432/scratch_h3 CERTCTL_ADMIN_API_KEY=adminkey123 CERTCTL_ENCRYPTION_KEY=$(cat /tmp/h3/enc 2>/dev/null || (head -c32 /dev/urandom | base64 | tee /tmp/h3/enc)) CERTCTL_LISTEN_ADDR=127.0.0.1:47311 CERTCTL_DATA_DIR=/tmp/h3/data nohup node --import tsx --conditions=source packages/server/src/bin.ts > /tmp/h3/server.log 2>&1 &
echo $! > /tmp/h3/server.pid
for i in $(seq 1 60); do grep -q "Listening on" /tmp/h3/server.log && break; sleep 1; done
tail -1 /tmp/h3/server.log
