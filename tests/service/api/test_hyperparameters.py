"""GET /v1/fine-tuning/hyperparameters over real HTTP: the names, defaults and bounds a job takes, read by
the web page instead of a copy of its own. No Redis needed."""

import httpx

from service.api.auth import key_hash, new_key
from service.api.web import STATIC
from service.jobs.hyperparameters import LR_POLICIES, OPTIMIZERS, FineTuneConfig
from service.settings import ApiKey, ServiceSettings
from tests.service.api.server import running_server
from tests.service.api.test_classify import assert_problem

URL = "/v1/fine-tuning/hyperparameters"


def test_the_names_defaults_and_bounds_a_job_takes(server: str) -> None:
    answer = httpx.get(f"{server}{URL}")
    assert answer.status_code == 200, answer.text
    schema = answer.json()
    assert schema["optimizers"] == list(OPTIMIZERS) and schema["lr_policies"] == list(LR_POLICIES)
    fields = {field["name"]: field for field in schema["hyperparameters"]}
    assert list(fields) == list(FineTuneConfig.model_fields)
    assert fields["epochs"] | {"description": ""} == {
        "name": "epochs",
        "type": "integer",
        "nullable": False,
        "default": 8,
        "description": "",
        "minimum": 1,
        "maximum": 1000,
    }
    assert fields["optimizer"]["choices"] == list(OPTIMIZERS) and fields["optimizer"]["sweepable"] is True
    assert (fields["learning_rate"]["exclusive_minimum"], fields["learning_rate"]["maximum"]) == (0, 10)
    assert "minimum" not in fields["val_fraction"] and fields["val_fraction"]["exclusive_minimum"] == 0
    assert fields["weight_decay"]["nullable"] is True and fields["weight_decay"]["default"] is None
    # the transfer-learning recipe: each part can be chosen, within these bounds
    assert {key: fields["label_smoothing"][key] for key in ("type", "default", "minimum", "exclusive_maximum")} == {
        "type": "number",
        "default": 0.1,
        "minimum": 0,
        "exclusive_maximum": 1,
    }
    patience = fields["early_stopping_patience"]
    assert (patience["type"], patience["default"]) == ("integer", 3)
    assert (patience["minimum"], patience["maximum"]) == (0, 1000)
    assert (fields["freeze_backbone_epochs"]["default"], fields["backbone_lr_multiplier"]["default"]) == (1, 0.3)
    assert fields["lr_policy"]["default"] == "cosine" and "onecycle" in fields["lr_policy"]["choices"]
    assert URL in httpx.get(f"{server}/schema/openapi.json").json()["paths"]


def test_it_needs_the_train_scope(service_settings: ServiceSettings) -> None:
    trainer, classifier = new_key(), new_key()
    keys = (
        ApiKey(name="trainer", sha256=key_hash(trainer), scopes=frozenset({"train"})),
        ApiKey(name="app", sha256=key_hash(classifier), scopes=frozenset({"classify"})),
    )
    with running_server(service_settings.model_copy(update={"auth_enabled": True, "api_keys": keys})) as url:
        assert httpx.get(f"{url}{URL}", headers={"Authorization": f"Bearer {trainer}"}).status_code == 200
        assert_problem(httpx.get(f"{url}{URL}", headers={"Authorization": f"Bearer {classifier}"}), 403, "train")


def test_the_page_lists_no_names_of_its_own() -> None:
    source = (STATIC / "finetune.js").read_text()
    assert URL in source
    assert not [name for name in (*OPTIMIZERS, *LR_POLICIES) if f'"{name}"' in source]
