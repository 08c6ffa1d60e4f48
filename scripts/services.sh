#!/usr/bin/env bash
# Make sure the local PostgreSQL and Redis answer; start them if not (commands from the machine notes).
set -euo pipefail
pg_ok() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
redis_ok() { [[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == "PONG" ]]; }
if ! pg_ok; then
  echo "services: starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! redis_ok; then
  echo "services: starting Redis" >&2
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
for _ in $(seq 1 30); do
  if pg_ok && redis_ok; then echo "services: PostgreSQL and Redis answer" >&2; exit 0; fi
  sleep 1
done
pg_ok || echo "services: PostgreSQL on 127.0.0.1:5432 does not answer" >&2
redis_ok || echo "services: Redis on 127.0.0.1:6379 does not answer" >&2
exit 1
