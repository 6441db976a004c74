"""``classify``: encoded images and the same images preprocessed take one path and get one answer."""

from pathlib import Path

import numpy as np
import pytest

from service.imaging import DecodeLimits
from service.inference.classify import classify, prepare, rank
from service.inference.errors import InvalidArgument
from service.inference.registry import ModelRegistry, ServingOptions
from service.repository import ModelRepository
from tests.service.api.conftest import png_bytes

pytestmark = pytest.mark.anyio
MODEL = "fashion-mnist"
LIMITS = DecodeLimits()


async def test_encoded_and_preprocessed_images_give_the_same_answer(model_root: Path) -> None:
    registry = ModelRegistry(ModelRepository(model_root), ServingOptions(intra_op_threads=1))
    await registry.start()
    try:
        with registry.lease(MODEL) as loaded:
            encoded = [png_bytes(seed) for seed in range(3)]
            from_bytes = await classify(loaded, encoded, limits=LIMITS, top_k=3)
            tensor = prepare(encoded, loaded.manifest.preprocessing, LIMITS)
            from_tensor = await classify(loaded, tensor, limits=LIMITS, top_k=3)
            with pytest.raises(InvalidArgument, match="between 1 and 10"):
                await classify(loaded, encoded, limits=LIMITS, top_k=11)
            with pytest.raises(InvalidArgument, match="no images"):
                await classify(loaded, [], limits=LIMITS, top_k=1)
    finally:
        await registry.stop()
    np.testing.assert_array_equal(from_bytes.probabilities, from_tensor.probabilities)
    assert from_bytes.results == from_tensor.results
    assert from_bytes.decode_s > 0 and from_tensor.decode_s == 0


def test_rank_orders_each_row_and_breaks_ties_by_index() -> None:
    probabilities = np.array([[0.1, 0.6, 0.3], [0.4, 0.2, 0.4]], dtype=np.float32)
    first, second = rank(probabilities, ("a", "b", "c"), 2, threshold=0.5)
    assert [(p.label, p.index) for p in first.top] == [("b", 1), ("c", 2)]
    assert [(p.label, p.index) for p in second.top] == [("a", 0), ("c", 2)]
    assert (first.low_confidence, second.low_confidence) == (False, True)
