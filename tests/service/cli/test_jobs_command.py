"""``imgcls jobs`` against the real API with a real Redis and no worker: jobs stay queued, which is enough
for submit, list, cancel and watching a cancelled job. The run to a published model is in
tests/training/worker/test_jobs_submit_wait.py."""

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from service.api.auth import key_hash, new_key
from service.cli import cli
from service.settings import ApiKey, ServiceSettings
from tests.redis_server import free_port
from tests.service.api.server import running_server
from tests.service.datasets.zips import folder_entries, image_bytes, write_zip

TRAIN_KEY = new_key()


def settings_with_redis(service_settings: ServiceSettings, redis_url: str, **changes: Any) -> ServiceSettings:
    data_root = service_settings.model_root.parent / "data"
    return service_settings.model_copy(update={"redis_url": redis_url, "data_root": data_root, **changes})


@pytest.fixture
def server(service_settings: ServiceSettings, redis_url: str) -> Iterator[str]:
    with running_server(settings_with_redis(service_settings, redis_url)) as url:
        yield url


def image_folder(root: Path, counts: dict[str, int]) -> Path:
    """An ImageFolder tree: ``root/<class>/<i>.png``."""
    for position, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            (root / name / f"{i}.png").write_bytes(image_bytes(seed=100 * position + i))
    return root


def jobs(url: str, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["jobs", "--url", url, *args], env=env)


def test_submit_list_cancel_and_watch(server: str, tmp_path: Path) -> None:
    run = f"run={uuid.uuid4().hex}"  # the session's Redis holds other tests' jobs too
    folder = image_folder(tmp_path / "pets", {"cat": 5, "dog": 5})
    submitted = jobs(
        server,
        "submit",
        str(folder),
        "--base",
        "fashion-mnist",
        "--epochs",
        "2",
        "--seed",
        "5",
        "--metadata",
        "team=vision",
        "--metadata",
        run,
        "--json",
    )
    assert submitted.exit_code == 0, submitted.output
    job = json.loads(submitted.stdout)
    assert (job["status"], job["base_version"], job["metadata"]) == ("queued", 1, {"team": "vision", "run": run[4:]})
    assert (job["hyperparameters"]["epochs"], job["hyperparameters"]["seed"]) == (2, 5)
    dataset = httpx.get(f"{server}/v1/datasets/{job['dataset']}").json()
    assert (dataset["name"], dataset["classes"]) == ("pets", {"cat": 5, "dog": 5})
    assert f"dataset {job['dataset']}: 10 images in 2 classes" in submitted.stderr

    archive = write_zip(tmp_path / "shoes.zip", folder_entries({"boot": 5, "sandal": 5}))
    sweep = jobs(
        server,
        "submit",
        str(archive),
        "--base",
        "fashion-mnist:1",
        "--learning-rate",
        "0.1",
        "--learning-rate",
        "0.01",
        "--batch-size",
        "8",
        "--metadata",
        "team=shoes",
        "--metadata",
        run,
    )
    assert sweep.exit_code == 0, sweep.output
    assert sweep.stdout.startswith("job ft_") and "queued: fashion-mnist v1, 2 trials" in sweep.stdout
    sweep_id = sweep.stdout.split()[1]
    swept = httpx.get(f"{server}/v1/fine-tuning/jobs/{sweep_id}").json()
    assert swept["hyperparameters"]["learning_rate"] == [0.1, 0.01] and swept["hyperparameters"]["batch_size"] == 8
    assert httpx.get(f"{server}/v1/datasets/{swept['dataset']}").json()["name"] == "shoes"

    table = jobs(server, "list", "--status", "queued", "--metadata", "team=shoes", "--metadata", run)
    assert table.exit_code == 0, table.output
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "STATUS", "BASE", "CREATED", "RESULT"]
    assert [row.split()[:4] for row in rows] == [[sweep_id, "queued", "fashion-mnist", "v1"]]
    lines = jobs(server, "list", "--json", "--limit", "1")  # newest first; --limit caps the pages followed
    assert [json.loads(line)["id"] for line in lines.stdout.splitlines()] == [sweep_id]
    both = jobs(server, "list", "--json", "--metadata", run)
    assert [json.loads(line)["id"] for line in both.stdout.splitlines()] == [sweep_id, job["id"]]

    cancelled = jobs(server, "cancel", job["id"])
    assert (cancelled.exit_code, cancelled.stdout) == (0, f"job {job['id']} cancelled\n"), cancelled.output
    again = jobs(server, "cancel", job["id"])
    assert again.exit_code == 1 and again.stderr.startswith("error: ") and "already cancelled" in again.stderr
    assert len(again.stderr.splitlines()) == 1, again.stderr
    watched = jobs(server, "watch", job["id"])
    assert watched.exit_code == 1, watched.output
    assert watched.stdout == f"job {job['id']} cancelled\n"
    assert "queued" in watched.stderr and "cancelled" in watched.stderr  # the log, above the bar
    listed = jobs(server, "list", "--status", "cancelled", "--metadata", run)
    assert [row.split()[:2] for row in listed.stdout.splitlines()[1:]] == [[job["id"], "cancelled"]]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--epochs", "0"], "epochs: Input should be greater than or equal to 1"),
        (["--optimizer", "adamax"], "unknown optimizer 'adamax'"),
        (["--min-accuracy", "0.9"], "min_accuracy gates auto_promote"),
        (["--base", "shoes"], "shoes"),
    ],
)
def test_the_api_s_reason_for_a_refusal(server: str, tmp_path: Path, options: list[str], message: str) -> None:
    run = f"run={uuid.uuid4().hex}"
    archive = write_zip(tmp_path / "pets.zip", folder_entries({"cat": 5, "dog": 5}))
    result = jobs(server, "submit", str(archive), "--base", "fashion-mnist", "--metadata", run, *options)
    assert result.exit_code == 2, result.output
    uploaded, refused = result.stderr.splitlines()
    assert refused.startswith("error: ") and message in refused, result.stderr
    dataset = uploaded.split()[1].rstrip(":")  # "dataset ds_...: 10 images in 2 classes"
    assert httpx.get(f"{server}/v1/datasets/{dataset}").status_code == 404  # removed again: no job uses it
    assert jobs(server, "list", "--metadata", run).stdout.count("\n") == 1  # the header alone: no job made


def test_usage_problems_found_before_any_request(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: a request would say so
    (tmp_path / "notes.txt").write_text("not a zip")
    not_zip = jobs(url, "submit", str(tmp_path / "notes.txt"), "--base", "fashion-mnist")
    assert not_zip.exit_code == 2 and "neither a folder nor a .zip file" in not_zip.output
    bad_label = jobs(url, "submit", str(tmp_path), "--base", "fashion-mnist:", "--metadata", "team")
    assert bad_label.exit_code == 2 and "'team' is not key=value" in bad_label.output
    (tmp_path / "empty").mkdir()
    empty = jobs(url, "submit", str(tmp_path / "empty"), "--base", "fashion-mnist")
    assert empty.exit_code == 2 and "holds no files" in empty.output


def test_a_server_that_cannot_be_reached(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["list"], ["watch", "ft_0"], ["cancel", "ft_0"]):
        result = jobs(url, *args)
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(f"error: the imgcls API at {url} cannot be reached"), result.stderr
    folder = image_folder(tmp_path / "pets", {"cat": 2, "dog": 2})
    submit = CliRunner().invoke(cli, ["jobs", "submit", str(folder), "--base", "fashion-mnist", "--url", url])
    assert submit.exit_code == 1 and url in submit.stderr, submit.output


def test_the_api_key_is_sent(service_settings: ServiceSettings, redis_url: str) -> None:
    keys = (ApiKey(name="trainer", sha256=key_hash(TRAIN_KEY), scopes=frozenset({"train"})),)
    with running_server(settings_with_redis(service_settings, redis_url, auth_enabled=True, api_keys=keys)) as url:
        without = jobs(url, "list")
        assert without.exit_code == 1 and "needs an API key" in without.stderr and "--api-key" in without.stderr
        wrong = jobs(url, "list", "--api-key", "nope")
        assert wrong.exit_code == 1 and "not valid" in wrong.stderr, wrong.output
        for given in (["--api-key", TRAIN_KEY], []):  # as an option after the subcommand, then from the env
            listed = jobs(url, "list", *given, env={"IMGCLS_API_KEY": TRAIN_KEY} if not given else None)
            assert listed.exit_code == 0, listed.output
            assert listed.stdout.splitlines()[0].split() == ["ID", "STATUS", "BASE", "CREATED", "RESULT"]
