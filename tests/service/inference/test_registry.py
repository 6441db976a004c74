import asyncio
from pathlib import Path

import numpy as np
import pytest

from service.inference.errors import ModelNotLoaded, ProviderUnavailable, StillLoading, VersionInUse, VersionNotLoaded
from service.inference.providers import CPU, CUDA, choose_providers, cuda_works
from service.inference.registry import ModelRegistry, ServingOptions
from service.repository import ModelNotFound, ModelRepository

pytestmark = pytest.mark.anyio
MODEL = "fashion-mnist"


OPTIONS = ServingOptions(intra_op_threads=1)


async def started(model_root: Path) -> ModelRegistry:
    registry = ModelRegistry(ModelRepository(model_root), OPTIONS)
    await registry.start()
    return registry


async def test_start_loads_the_production_version_of_every_model(model_root: Path) -> None:
    registry = await started(model_root)
    try:
        assert registry.ready() == (True, "ready")
        loaded = registry.find(MODEL)
        assert (loaded.version, loaded.variant, loaded.predictor.provider) == (1, "fp32", CPU)
        outcome = await loaded.batcher.submit(np.zeros((3, 1, 28, 28), np.float32))
        assert outcome.probabilities.shape == (3, 10)
        np.testing.assert_allclose(outcome.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    finally:
        await registry.stop()


async def test_an_empty_repository_is_not_ready_and_says_why(tmp_path: Path) -> None:
    registry = await started(tmp_path)
    ready, reason = registry.ready()
    assert not ready
    assert "imgcls train" in reason
    with pytest.raises(ModelNotFound):
        registry.find(MODEL)


async def test_promotion_swaps_and_the_old_version_closes_after_its_last_request(
    model_root: Path,
) -> None:
    registry = await started(model_root)
    try:
        with registry.lease(MODEL) as old:
            await registry.promote(MODEL, 2, redis_url=None)
            assert registry.find(MODEL).version == 2  # new requests go to v2 at once
            assert old.retired and not old.closed.is_set()  # v1 still finishes what it holds
            await old.batcher.submit(np.zeros((1, 1, 28, 28), np.float32))
        await asyncio.wait_for(old.closed.wait(), timeout=5)
        assert registry.repository.aliases(MODEL)["production"] == 2
    finally:
        await registry.stop()


async def test_load_unload_and_the_serving_version_is_protected(model_root: Path) -> None:
    registry = await started(model_root)
    try:
        with pytest.raises(VersionNotLoaded, match=r"v2 is not loaded on this server$"):  # the API adds how to load it
            registry.find(MODEL, version=2)
        loaded = await registry.load(MODEL, 2, None)
        assert loaded.pinned and registry.find(MODEL, version=2) is loaded
        with pytest.raises(VersionInUse, match="promote another version first"):
            await registry.unload(MODEL, 1, None)
        [released] = await registry.unload(MODEL, 2, None)
        await asyncio.wait_for(released.closed.wait(), timeout=5)
        with pytest.raises(ModelNotLoaded):
            registry.find(MODEL, version=2)
    finally:
        await registry.stop()


async def test_refresh_follows_an_alias_moved_by_another_process(model_root: Path) -> None:
    registry = await started(model_root)
    try:
        ModelRepository(model_root).set_alias(MODEL, "production", 2)
        await registry.refresh()
        assert registry.find(MODEL).version == 2
        assert registry.find(MODEL, alias="production").version == 2
    finally:
        await registry.stop()


def test_providers_cuda_on_a_gpu_machine_cpu_elsewhere_and_cuda_refused_clearly_without_a_gpu() -> None:
    assert choose_providers("cpu") == [CPU]
    if Path("/dev/nvidiactl").exists():  # a GPU machine (benchmarks/gpu_check.py runs there): CUDA must be chosen
        assert cuda_works(), "an NVIDIA device is present but onnxruntime's CUDA provider does not work"
        assert choose_providers("auto") == choose_providers("cuda") == [CUDA, CPU]
        return
    assert choose_providers("auto") == [CPU]
    with pytest.raises(ProviderUnavailable, match="use auto or cpu"):
        choose_providers("cuda")


async def test_a_process_still_loading_says_so_instead_of_not_loaded(model_root: Path) -> None:
    registry = ModelRegistry(ModelRepository(model_root), OPTIONS)
    with pytest.raises(StillLoading, match="retry in a moment"):  # another worker may already be ready
        registry.find(MODEL)


async def test_a_model_that_fails_to_load_keeps_the_server_not_ready(model_root: Path) -> None:
    repository = ModelRepository(model_root)
    broken = repository.path(MODEL, 1) / "model.onnx"
    broken.write_bytes(b"not the file the manifest hashed")
    registry = await started(model_root)
    ready, reason = registry.ready()
    assert not ready
    assert MODEL in reason
