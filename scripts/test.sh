#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine,
# makes sure PostgreSQL answers if the machine has a cluster, then runs
# `cargo test` (extra arguments are passed on).
#
# Needs: PostgreSQL server binaries (the tests use a server at 127.0.0.1:5432,
# or start a private one under .paywatch/), and Chromium with chromedriver for
# the invoice page's browser test. Installing them takes root; without it, the
# script says what to install and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
has_server_binaries() {
    command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1
}
{ command -v pg_isready >/dev/null 2>&1 && has_server_binaries; } || missing+=(postgresql)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium chromium-driver)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "test: missing Debian packages: ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
    echo "test: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "test: PostgreSQL answers at 127.0.0.1:5432"
elif [ "$(id -u)" -eq 0 ] && ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "test: starting the machine's PostgreSQL cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "test: no server at 127.0.0.1:5432; the tests start paywatch's private cluster"
fi

cargo test "$@"
