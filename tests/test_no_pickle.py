"""No pickle loads of untrusted files anywhere: the source tree is read with ``ast``, not run.

Unpickling runs code chosen by whoever wrote the file, so a model, checkpoint, dataset or queue message that
arrives from outside must never be unpickled. In service/, training/ and benchmarks/ this finds every call of:

- ``pickle.load``/``loads``/``Unpickler`` (and ``_pickle``, ``cPickle``, ``dill``, ``cloudpickle``), ``shelve.open``,
  ``joblib.load``, ``pandas.read_pickle``, ``torch.package.PackageImporter``;
- ``torch.load`` without ``weights_only=True`` (a literal True: tensors and plain types only, no pickled code);
- ``numpy.load`` with ``allow_pickle`` set to anything but a literal False;

however the module was imported (``import numpy as np``, ``from pickle import loads as l``). It also finds the
name ``pickle`` as a serializer anywhere (Celery's ``accept_content``, kombu's ``application/x-python-serialize``):
the job queue speaks JSON only, so a message in Redis cannot run code in a worker or the API.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("service", "training", "benchmarks")
FORBIDDEN = {
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "_pickle.load",
    "_pickle.loads",
    "_pickle.Unpickler",
    "cPickle.load",
    "cPickle.loads",
    "dill.load",
    "dill.loads",
    "cloudpickle.load",
    "cloudpickle.loads",
    "shelve.open",
    "joblib.load",
    "pandas.read_pickle",
    "torch.package.PackageImporter",
}
PICKLE_SERIALIZERS = {"pickle", "application/x-python-serialize"}


def imported_names(tree: ast.Module) -> dict[str, str]:
    """Local name -> the dotted name it stands for, from every import in the file."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def dotted(node: ast.expr, names: dict[str, str]) -> str | None:
    """``np.load`` -> ``numpy.load`` (through the file's imports), or None for anything that is not a name path."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([names.get(node.id, node.id), *reversed(parts)])


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((item.value for item in call.keywords if item.arg == name), None)


def is_constant(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def problems_in(source: str, filename: str) -> Iterator[str]:
    tree = ast.parse(source, filename)
    names = imported_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in PICKLE_SERIALIZERS:
            yield f"{filename}:{node.lineno}: the serializer {node.value!r} (use JSON)"
        if not isinstance(node, ast.Call):
            continue
        called = dotted(node.func, names)
        where = f"{filename}:{node.lineno}: {called}"
        if called in FORBIDDEN:
            yield f"{where} unpickles"
        elif called == "torch.load" and not is_constant(keyword(node, "weights_only"), True):
            yield f"{where} without weights_only=True"
        elif called == "numpy.load" and (allow := keyword(node, "allow_pickle")) and not is_constant(allow, False):
            yield f"{where} with allow_pickle"


def test_the_scan_finds_what_it_looks_for() -> None:
    bad = """
import pickle
import numpy as np
import torch
from pickle import loads as undo
from joblib import load
pickle.load(open("f", "rb"))
undo(b"")
load("model.joblib")
torch.load("c.pt")
torch.load("c.pt", weights_only=False)
np.load("a.npy", allow_pickle=True)
app.conf.update(accept_content=["json", "pickle"])
"""
    good = """
import numpy as np
import torch
torch.load("c.pt", map_location="cpu", weights_only=True)
np.load("a.npy")
np.load("a.npy", allow_pickle=False)
json.loads("{}")
"""
    found = list(problems_in(bad, "bad.py"))
    assert len(found) == 7, found
    assert any("pickle.loads unpickles" in line for line in found)
    assert any("joblib.load unpickles" in line for line in found)
    assert list(problems_in(good, "good.py")) == []


def python_files() -> list[Path]:
    files = [path for folder in SCANNED for path in sorted((ROOT / folder).rglob("*.py"))]
    assert len(files) > 50  # the tree is where we think it is
    return files


@pytest.mark.parametrize("folder", SCANNED)
def test_no_pickle_loads_in_the_source_tree(folder: str) -> None:
    found = [
        problem
        for path in python_files()
        if path.is_relative_to(ROOT / folder)
        for problem in problems_in(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert found == []


def test_the_job_queue_accepts_json_only() -> None:
    from service.jobs.queue import celery_config

    config = celery_config(redis_url="redis://127.0.0.1:1/0", queue="fine-tuning", max_seconds=600)
    assert config["accept_content"] == ["json"]
    assert config["task_serializer"] == "json"
