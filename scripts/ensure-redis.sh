#!/usr/bin/env bash
# Start a throw-away Redis on 127.0.0.1:6379 unless one already answers there.
set -euo pipefail
answers() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && head -c5 <&3 | grep -q PONG) 2>/dev/null; }
answers && exit 0
if ! command -v redis-server >/dev/null; then
  echo "[redis] installing redis-server from Debian's packages" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
echo "[redis] starting redis-server on 127.0.0.1:6379" >&2
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
  --dir /tmp --logfile /tmp/bugsink-sync-redis.log
for _ in $(seq 50); do answers && exit 0; sleep 0.1; done
echo "[redis] redis-server did not answer on 127.0.0.1:6379; see /tmp/bugsink-sync-redis.log" >&2
exit 1
