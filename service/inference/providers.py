"""Which onnxruntime execution providers to ask for: CUDA only when it really works, without a wall of logs.

onnxruntime-gpu lists CUDAExecutionProvider whether or not a GPU or the CUDA libraries exist, and falls back
to the CPU with pages of errors when they do not. So "auto" first looks for an NVIDIA device and loads the
CUDA and cuDNN libraries quietly (``onnxruntime.preload_dlls``); the provider that actually runs is read
back from the session (``Predictor.provider``).
"""

import contextlib
import ctypes
import io
import os
from pathlib import Path
from typing import Literal

import onnxruntime as ort

from service.inference.errors import ProviderUnavailable

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def _nvidia_device_present() -> bool:
    if not Path("/dev/nvidiactl").exists() and not any(Path("/dev").glob("nvidia[0-9]*")):
        return False
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return libcuda.cuInit(0) == 0 and libcuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0


def cuda_works() -> bool:
    """True when onnxruntime has the CUDA provider, a device is present and the CUDA libraries load."""
    if CUDA not in ort.get_available_providers() or not _nvidia_device_present():
        return False
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(OSError, RuntimeError):
            preload()
    return True


def choose_providers(setting: Literal["auto", "cpu", "cuda"]) -> list[str]:
    """The provider list for ``onnxruntime.InferenceSession``, most preferred first."""
    if setting == "cpu":
        return [CPU]
    if cuda_works():
        return [CUDA, CPU]
    if setting == "cuda":
        raise ProviderUnavailable(
            "IMGCLS_PROVIDERS=cuda but CUDA does not work here (no NVIDIA device, or onnxruntime-gpu cannot load "
            "CUDA 13 / cuDNN 9); use auto or cpu"
        )
    return [CPU]


def default_threads(workers: int) -> int:
    """Intra-op threads per session when the setting is 0: the cores shared among the server processes."""
    return max(1, (os.cpu_count() or 1) // workers)
