#!/usr/bin/env bash
# Command 1: set up, train and publish the default model if the repository has none, then serve it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

model_root=${IMGCLS_MODEL_ROOT:-var/models}
if [ -z "$(.venv/bin/imgcls models list --json --model-root "$model_root")" ]; then
    echo "==> the repository $model_root is empty: training the default model (about 3 minutes on 2 cores)"
    .venv/bin/imgcls train --model-root "$model_root"
fi
.venv/bin/imgcls models list --model-root "$model_root"

# Local use: no API keys. Every deploy configuration (deploy/) turns auth on.
host=${IMGCLS_HOST:-127.0.0.1}
port=${IMGCLS_PORT:-8000}
echo "==> serving at http://$host:$port (web page: http://$host:$port/ui; API docs: http://$host:$port/schema; stop with Ctrl+C)"
echo "    try: curl -F images=@some.png http://$host:$port/v1/models/fashion-mnist/classify"
exec .venv/bin/imgcls serve --no-auth --model-root "$model_root" --host "$host" --port "$port"
