"""service/ never imports torch: every .py file under service/ is imported, found by its path on disk (so a
folder without an ``__init__.py`` cannot hide one), in a fresh interpreter where ``import torch`` fails."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMPORT_ALL = """
import importlib, sys
names = sys.argv[1:]
sys.modules["torch"] = None  # import torch (or torch.anything) now raises ImportError
sys.argv = ["imgcls", "--help"]  # what a __main__ module runs when imported
failed = []
for name in names:
    try:
        importlib.import_module(name)
    except SystemExit as exit:  # a __main__ module: its command ran and exited
        if exit.code not in (0, None):
            failed.append(f"{name}: exited with {exit.code}")
    except Exception as error:
        failed.append(f"{name}: {type(error).__name__}: {error}")
sys.stderr.write("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def module_names() -> list[str]:
    files = sorted((ROOT / "service").rglob("*.py"))
    return [".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for path in files]


def test_every_file_under_service_imports_without_torch() -> None:
    names = module_names()
    assert "service.inference.registry" in names and "service.cli.__main__" in names
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, *names], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"modules under service/ that need torch (or fail to import):\n{result.stderr}"
