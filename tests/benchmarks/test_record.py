import argparse
import json
from pathlib import Path

import pytest
import record


def test_a_result_file_holds_the_figures_the_machine_and_every_version(tmp_path: Path) -> None:
    run = record.begin("smoke", argparse.Namespace(rounds=3, model_root=Path("var/models")))
    path = record.save(run, {"figure": 1.5}, tmp_path, packages={"peers": {"bentoml": {"bentoml": "1.4.40"}}})

    assert path == tmp_path / f"smoke-{run['started'][:10].replace('-', '')}.json"
    stored = json.loads(path.read_text())
    assert stored["benchmark"] == "smoke"
    assert stored["figure"] == 1.5
    assert stored["arguments"] == {"rounds": 3, "model_root": "var/models"}
    machine = stored["machine"]
    assert machine["cores"] >= 1 and machine["cpu_model"]
    assert {"load_1min_before", "load_1min_after", "uptime_before", "uptime_after"} <= machine.keys()
    versions = stored["versions"]
    assert len(versions["imgcls"]["commit"]) == 40
    assert {"numpy", "litestar", "uvicorn"} <= versions["packages"].keys()
    assert any(name.startswith("onnxruntime") for name in versions["packages"])
    assert versions["peers"] == {"bentoml": {"bentoml": "1.4.40"}}
    assert stored["started"] <= stored["finished"]


def test_a_second_run_the_same_day_gets_a_file_of_its_own(tmp_path: Path) -> None:
    first = record.save(record.begin("twice"), {"n": 1}, tmp_path)
    second = record.save(record.begin("twice"), {"n": 2}, tmp_path)
    assert second.name == first.name.replace(".json", "-2.json")
    assert json.loads(first.read_text())["n"] == 1


@pytest.mark.parametrize("name", ["", "../escape", ".hidden"])
def test_a_result_name_must_be_a_plain_file_name(name: str) -> None:
    with pytest.raises(SystemExit, match="plain file-name stem"):
        record.begin(name)
