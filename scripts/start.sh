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
echo "==> the model repository is $model_root; the inference service is not built yet (issue 4)."
