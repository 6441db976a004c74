#!/usr/bin/env bash
# Prepares .gpu/ (ignored by .gitignore) for benchmarks/gpu_check.py on a lent GPU machine that
# has no network and its own Python 3.12 with torch, torchvision, numpy, pillow and a CPU onnxruntime: the
# wheels of what imgcls needs beyond those (the versions of this project's .venv, built for CPython 3.12), and
# the Fashion-MNIST files (IMGCLS_FASHION_MNIST_DIR, else the settings' default folder). About 40 MB, under
# the 64 MiB a device call may carry. onnxruntime-gpu itself (200 MB) does not fit: without it gpu_check.py
# records the service and variant checks as skipped, with the reason, and runs the training ones.
#
#   benchmarks/gpu_carry.sh            # then the device call in docs/benchmarks.md, "GPU check"
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
rm -rf .gpu && mkdir -p .gpu/whl .gpu/fashion-mnist
# imgcls's own dependencies (pyproject.toml) and theirs that the GPU machine's image lacks
names="litestar msgspec pyspng uvicorn httptools multipart pydantic pydantic-core pydantic-settings annotated-types
typing-inspection python-dotenv redis celery kombu billiard vine amqp click-didyoumean click-repl click-plugins
prompt-toolkit wcwidth tzlocal litestar-htmx rich-click polyfactory faker sniffio"
pins=$("$PY" - $names <<'PY'
import importlib.metadata as m, sys
for name in sys.argv[1:]:
    try:
        print(f"{name}=={m.version(name)}")
    except m.PackageNotFoundError:
        pass
PY
)
# shellcheck disable=SC2086
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .gpu/whl $pins
data=$("$PY" -c 'from training.settings import TrainingSettings; print(TrainingSettings().fashion_mnist_dir)')
cp "$data"/*-ubyte* .gpu/fashion-mnist/
du -sh .gpu
