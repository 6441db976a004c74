#!/usr/bin/env bash
# Command 1: set up, train and publish the default model if the repository has none, then run the whole
# product with `imgcls up`: Redis, the API (web page included) and a fine-tuning worker.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

# imgcls up starts its own Redis (redis-server) unless IMGCLS_REDIS_URL names one.
if [ -z "${IMGCLS_REDIS_URL:-}" ] && ! command -v redis-server >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "==> installing redis-server (imgcls up runs it for the fine-tuning jobs; its data goes to var/redis)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
        echo "redis-server is missing: sudo apt-get install redis-server (or set IMGCLS_REDIS_URL to a Redis of yours)" >&2
        exit 1
    fi
fi

model_root=${IMGCLS_MODEL_ROOT:-var/models}
if [ -z "$(.venv/bin/imgcls models list --json --model-root "$model_root")" ]; then
    echo "==> the repository $model_root is empty: training the default model (about 3 minutes on 2 cores)"
    .venv/bin/imgcls train --model-root "$model_root"
fi
.venv/bin/imgcls models list --model-root "$model_root"

# Local use: no API keys. Every deploy configuration (deploy/) turns auth on.
host=${IMGCLS_HOST:-127.0.0.1}
port=${IMGCLS_PORT:-8000}
echo "==> starting Redis, the API and a fine-tuning worker (imgcls up; stop with Ctrl+C)"
echo "    try: curl -F images=@some.png http://$host:$port/v1/models/fashion-mnist/classify"
exec .venv/bin/imgcls up --no-auth --model-root "$model_root" --host "$host" --port "$port"
