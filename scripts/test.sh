#!/usr/bin/env bash
# Command 2: the whole test suite (after setting up what it needs), plus lint and type checks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

if ! command -v redis-server >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "==> installing redis-server (tests start their own on a free port)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
        echo "redis-server is missing: sudo apt-get install redis-server" >&2
        exit 1
    fi
fi

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "==> installing chromium and chromium-driver (the web page's browser tests drive it headless)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "chromium is missing: sudo apt-get install chromium chromium-driver" >&2
        exit 1
    fi
fi

echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
status=0
# one pytest process per core (pytest-xdist), each test file whole in one of them (its module fixtures are made
# once): 13 minutes on 2 cores where one process took about 17
.venv/bin/python -m pytest -n auto --dist loadfile "$@" || status=$?
if [ "$status" = 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
echo "==> container images: build the api and worker images with buildah and smoke-test them (scripts/containers.sh)"
scripts/containers.sh || status=1
exit "$status"
