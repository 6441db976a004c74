"""The ``imgcls`` group: the service's commands alone, and training's joining them where torch is installed.

The api image ships no training package; here it is made unimportable (``sys.modules['training'] = None``)
in a fresh interpreter, which is what that image sees. tests/deploy/test_api_install.py does the same in
an installation without torch.
"""

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.cli import cli


def imgcls_without_training(
    *args: str, python: str = sys.executable, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``imgcls <args>`` run by ``python`` with the training package unimportable; the last line of its
    output lists what it imported of torch and training."""
    code = (
        "import sys\n"
        "sys.modules['training'] = None  # import training now fails, as in the api image\n"
        "from service.cli import main\n"
        "try:\n"
        f"    main({list(args)!r})\n"
        "finally:\n"
        "    loaded = {name.split('.')[0] for name, module in sys.modules.items() if module is not None}\n"
        "    print('imported:', sorted(loaded & {'torch', 'training'}))\n"
    )
    return subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_help_lists_the_training_commands_where_they_can_run() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    for name in ("serve", "up", "classify", "api-key", "jobs", "train", "fine-tune", "models", "worker"):
        assert f"\n  {name} " in result.output
    assert "pip install" not in result.output


@pytest.mark.parametrize("command", ["serve", "classify"])
def test_without_an_inference_runtime_the_model_commands_say_which_extra_to_install(command: str) -> None:
    """The base install has no onnxruntime (it comes with the `cpu` or `gpu` extra); the commands that run
    models say so in one line instead of failing deep inside a server process. The others still run."""
    code = (
        "import sys\n"
        "sys.modules['onnxruntime'] = None  # import onnxruntime now fails, as after `pip install imgcls`\n"
        "from service.cli import main\n"
        f"main([{command!r}, '--help'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: imgcls {command} needs an inference runtime (onnxruntime is not installed): "
        "pip install 'imgcls[cpu]' (or 'imgcls[gpu]' for onnxruntime-gpu)"
    )
    jobs = subprocess.run(
        [sys.executable, "-c", code.replace(f"[{command!r}, '--help']", "['jobs', '--help']")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert jobs.returncode == 0 and "submit" in jobs.stdout, jobs.stderr


def test_without_the_training_package_the_service_commands_run_alone(tmp_path: Path) -> None:
    serve = imgcls_without_training("serve", "--help")
    assert serve.returncode == 0, serve.stderr
    assert "--workers" in serve.stdout
    assert serve.stdout.splitlines()[-1] == "imported: []"

    listing = imgcls_without_training("--help")
    assert listing.returncode == 0, listing.stderr
    assert "\n  serve " in listing.stdout and "\n  train " not in listing.stdout
    assert "Training commands (train, evaluate, fine-tune, worker, ...) need pip install 'imgcls[train]'." in (
        " ".join(listing.stdout.split())
    )

    train = imgcls_without_training("train")
    assert train.returncode == 2
    assert train.stderr.strip() == (
        "error: no command 'train' here: this installation has the service's only (serve, classify, api-key, "
        "jobs, up); training's commands need pip install 'imgcls[train]'"
    )

    up = imgcls_without_training("up", "--no-auth", cwd=tmp_path)  # its workers would need training
    assert up.returncode == 1
    assert up.stderr.strip() == (
        "error: imgcls up starts fine-tuning workers, which need the training dependencies: pip install "
        "'imgcls[train]'; or run imgcls up --job-workers 0 (classification only: jobs wait in the queue)"
    )
    assert up.stdout.splitlines()[-1] == "imported: []" and not (tmp_path / "var").exists()  # nothing started


def test_a_training_command_answers_a_user_problem_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["models", "show", "nosuch", "--model-root", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.startswith("error: ModelNotFound: "), result.output
    assert len(result.output.strip().splitlines()) == 1
