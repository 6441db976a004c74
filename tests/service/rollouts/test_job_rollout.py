"""A fine-tuning job's ``"auto_promote": "shadow"``: training's ``settle`` starts a shadow rollout instead of
promoting, and a running server joins it (loads the candidate) and lets the gate promote it."""

import time
from pathlib import Path

import httpx
import pytest

from service.repository import ModelRepository
from service.repository.run_folder import TrialFolder
from service.rollouts.store import RolloutStore
from service.settings import ServiceSettings
from tests.service.api.conftest import png_bytes
from tests.service.api.server import running_server
from tests.service.rollouts.candidates import MODEL


def test_a_job_asking_for_a_shadow_rollout_is_promoted_by_its_gate(
    service_settings: ServiceSettings, repository: ModelRepository, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    from training.finetune import settle

    with running_server(service_settings) as server:
        ref = repository.publish(repository.manifest(MODEL, 2), repository.path(MODEL, 2) / "model.onnx", None)
        folder = TrialFolder(tmp_path / "trial")
        promoted = settle(
            repository, folder, ref, auto_promote="shadow", min_accuracy=None, redis_url=None, job_id="ft_test"
        )
        assert promoted is False and repository.aliases(MODEL)["production"] == 1
        plan = RolloutStore(repository).current(MODEL)
        assert plan is not None and plan.version == ref.version and plan.mode == "shadow" and plan.gate is not None
        assert settle(  # a redelivered job finds its rollout
            repository, folder, ref, auto_promote="shadow", min_accuracy=None, redis_url=None, job_id="ft_test"
        ) is False  # fmt: skip
        assert RolloutStore(repository).current(MODEL) == plan

        deadline = time.monotonic() + 20
        while httpx.get(f"{server}/v1/models/{MODEL}/rollout").status_code != 200:  # the server joins
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert httpx.get(f"{server}/v1/models/{MODEL}/rollout").json()["started_by"] == "fine-tuning job ft_test"
        # the job's gate waits for 1000 compared requests; promote by hand to end the test quickly
        for seed in range(5):
            assert httpx.post(
                f"{server}/v1/models/{MODEL}/classify", content=png_bytes(seed), headers={"content-type": "image/png"}
            ).status_code == 200  # fmt: skip
        ended = httpx.post(f"{server}/v1/models/{MODEL}/rollout/promote")
        assert ended.status_code == 200 and ended.json()["figures"]["compared"] == 5, ended.text
        assert repository.aliases(MODEL)["production"] == ref.version
