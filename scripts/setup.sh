#!/usr/bin/env bash
# Sets up everything imgcls needs on a fresh machine; safe to run again (it skips what is done).
#   - .venv with the project, its training and development extras (torch from this disk's wheels) and an
#     inference runtime (the gpu extra on Linux x86_64, else cpu)
#   - the Fashion-MNIST IDX files (Debian package dataset-fashion-mnist when running as root)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" - <<'PY' || { echo "imgcls needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)
PY

if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.imgcls-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    # The inference runtime: onnxruntime-gpu where its wheels exist (it runs on the CPU too, and on a GPU
    # with torch's CUDA libraries), onnxruntime's CPU build elsewhere. Never both: they share one module.
    runtime=cpu
    if [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ]; then runtime=gpu; fi
    echo "==> installing imgcls with its training, development and $runtime extras (torch is large; a few minutes)"
    .venv/bin/python -m pip install --quiet --upgrade pip
    # pip, not uv/poetry: pip takes torch 2.14.1 from this machine's disk instead of downloading it.
    .venv/bin/python -m pip install --quiet --editable ".[train,dev,$runtime]"
    echo "$want" > "$stamp"
fi

data_dir=${IMGCLS_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
if ! ls "$data_dir"/train-images-idx3-ubyte* >/dev/null 2>&1; then
    if [ "$data_dir" = /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "==> installing the Debian package dataset-fashion-mnist"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
    else
        cat >&2 <<MSG
Fashion-MNIST is missing from $data_dir.
Either install it:   sudo apt-get install dataset-fashion-mnist
or put the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
t10k-labels-idx1-ubyte, gzipped or not) in a folder and point IMGCLS_FASHION_MNIST_DIR at it.
MSG
        exit 1
    fi
fi
