#!/usr/bin/env bash
# Makes sure the services the test suite uses for real are running on this machine:
# PostgreSQL on 127.0.0.1:5432 (trust auth for loopback), Redis on 127.0.0.1:6379 and an
# S3-compatible server (moto) on 127.0.0.1:9400.
# Idempotent: a service that already answers is left alone. Tests fail (never skip)
# when a service is missing, so this runs before them (scripts/test.sh).
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if [ -z "${FLOODLIGHT_TEST_POSTGRES:-}" ] && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    read -r pg_version pg_cluster < <(pg_lsclusters -h | awk 'NR == 1 { print $1, $2 }')
    hba="/etc/postgresql/$pg_version/$pg_cluster/pg_hba.conf"
    if ! $SUDO grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
        echo "trusting loopback connections in $hba (test database)"
        $SUDO sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    fi
    echo "starting PostgreSQL $pg_version/$pg_cluster"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$pg_version" "$pg_cluster" start ||
        $SUDO pg_ctlcluster --skip-systemctl-redirect "$pg_version" "$pg_cluster" restart
    pg_isready -q -h 127.0.0.1 -p 5432 -t 30
fi

if [ -z "${FLOODLIGHT_TEST_REDIS:-}" ] && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "starting Redis on 127.0.0.1:6379"
    $SUDO mkdir -p /var/lib/redis /var/log/redis
    $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/floodlight-ci.log
    for _ in $(seq 50); do
        redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null
fi

moto="${XDG_CACHE_HOME:-$HOME/.cache}/floodlight/moto"
if [ -z "${FLOODLIGHT_TEST_S3:-}" ] && ! curl -s -o /dev/null http://127.0.0.1:9400/; then
    echo "starting the S3 server (moto) on 127.0.0.1:9400"
    nohup "$moto/venv/bin/moto_server" -H 127.0.0.1 -p 9400 >"$moto/server.log" 2>&1 &
    for _ in $(seq 100); do
        curl -s -o /dev/null http://127.0.0.1:9400/ && break
        sleep 0.1
    done
    curl -s -o /dev/null http://127.0.0.1:9400/
fi
