"""Write the images' requirement files from pyproject.toml, so that pyproject.toml stays the one list.

    python requirements.py pyproject.toml OUT_DIR

writes into OUT_DIR:
  base.txt   the base dependencies: what the API needs (no torch, no inference runtime; onnx, for imports)
  cpu.txt    the ``cpu`` extra: onnxruntime's CPU build (the api and worker images)
  gpu.txt    the ``gpu`` extra: onnxruntime-gpu (the worker-gpu image; torch brings CUDA and cuDNN there)
  cuda.txt   onnxruntime-gpu as in the ``gpu`` extra, with its ``cuda`` and ``cudnn`` extras (NVIDIA's
             CUDA 13 and cuDNN 9 pip wheels, which ``onnxruntime.preload_dlls()`` loads: the api-gpu image)
  train.txt  the ``train`` extra (torch, torchvision, onnxscript, ...)
  torch.txt  torch and torchvision alone, as pinned in the ``train`` extra (the CPU images take them from
             PyTorch's CPU index first: the same versions without the CUDA libraries)

The Dockerfile copies only pyproject.toml and this file before installing dependencies, so those layers are
rebuilt only when the dependencies change, not on every source change. Standard library only.
"""

import re
import sys
import tomllib
from pathlib import Path
from typing import Any

TORCH = ("torch", "torchvision")
ORT_GPU = "onnxruntime-gpu"


def name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def requirement_files(pyproject: dict[str, Any]) -> dict[str, list[str]]:
    project = pyproject["project"]
    extras = project["optional-dependencies"]
    base: list[str] = list(project["dependencies"])
    train: list[str] = list(extras["train"])
    torch = [r for r in train if name(r) in TORCH]
    gpu: list[str] = list(extras["gpu"])
    if len(torch) != len(TORCH) or [name(r) for r in gpu] != [ORT_GPU]:
        raise ValueError(f"pyproject.toml: expected {TORCH} in the train extra and {ORT_GPU} alone in the gpu extra")
    cuda = [re.sub(rf"^\s*{ORT_GPU}", f"{ORT_GPU}[cuda,cudnn]", gpu[0])]
    return {
        "base.txt": base,
        "cpu.txt": list(extras["cpu"]),
        "gpu.txt": gpu,
        "cuda.txt": cuda,
        "train.txt": train,
        "torch.txt": torch,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {argv[0]} pyproject.toml OUT_DIR", file=sys.stderr)
        return 2
    pyproject = tomllib.loads(Path(argv[1]).read_text(encoding="utf-8"))
    out = Path(argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for filename, lines in requirement_files(pyproject).items():
        (out / filename).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
