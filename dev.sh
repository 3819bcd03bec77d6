#!/usr/bin/env bash
# The project's two commands, on any machine with Python 3.11+:
#   ./dev.sh demo    install everything, then run the service with a demo tenant (SQLite, sandbox)
#   ./dev.sh test    install everything, then run the whole test suite on SQLite and on PostgreSQL
# Installs are pinned by constraints.txt into .venv beside this file.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv

install() {
    local extras=$1
    if [ ! -x "$VENV/bin/python" ]; then
        echo "==> creating $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    echo "==> installing agentbilling$extras (pinned by constraints.txt)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".$extras"
}

postgres_up() {
    # Tests run against a real PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth).
    if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return 0; fi
    echo "==> PostgreSQL is down; starting it"
    if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
        for version in $(ls /etc/postgresql); do
            pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        done
    fi
    for _ in $(seq 1 30); do
        if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return 0; fi
        sleep 1
    done
    echo "error: PostgreSQL at 127.0.0.1:5432 cannot be reached" >&2
    return 1
}

chromium_up() {
    # The browser tests drive Debian's Chromium; Playwright's own browser downloads do not work here.
    if [ -n "${AGENTBILLING_TEST_CHROMIUM:-}" ] || command -v chromium >/dev/null; then return 0; fi
    echo "==> installing Debian's chromium for the browser tests"
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if ! command -v sudo >/dev/null; then
            echo "error: the browser tests need chromium: apt-get install chromium (as root)" >&2
            return 1
        fi
        sudo="sudo"
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium >/dev/null \
        || { $sudo apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium >/dev/null; }
    command -v chromium >/dev/null || { echo "error: chromium could not be installed" >&2; return 1; }
}

cmd=${1:-help}
shift || true
case "$cmd" in
    demo)
        install ""
        exec "$VENV/bin/agentbilling" demo "$@"
        ;;
    test)
        install "[test]"
        postgres_up
        chromium_up
        echo "==> import rules (domain is pure, rooms point inward)"
        "$VENV/bin/lint-imports"
        echo "==> lint and import order (ruff)"
        "$VENV/bin/ruff" check src tests bench
        echo "==> types (mypy, strict on the domain and the use cases)"
        "$VENV/bin/mypy"
        echo "==> tests on SQLite"
        "$VENV/bin/python" -m pytest "$@"
        echo "==> tests on PostgreSQL"
        AGENTBILLING_TEST_DATABASE_URL=${AGENTBILLING_TEST_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/postgres} \
            "$VENV/bin/python" -m pytest "$@"
        ;;
    *)
        sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
