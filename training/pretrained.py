"""Weights files brought by a user, torchvision's ImageNet files above all: read safely, checked by name.

torchvision publishes each model's ImageNet weights as a plain state_dict saved with ``torch.save``,
named ``<arch>-<hash>.pth`` (``resnet18-f37072fd.pth``), where ``<hash>`` is the start of the file's
sha256 (torch.hub's convention). ``read_weights_file`` checks that hash when the name carries one (a
suffix of 8 to 64 hex digits), so a truncated or altered download is refused before it is unpickled,
then loads with ``weights_only=True``: tensors and plain containers only, never pickled code.

``fit_weights`` checks every key and shape against the model that will take them and names what does
not fit (missing, unexpected, other shape). ``initial_weights`` is ``imgcls train --init-weights``:
the same checks, except that a classifier head of another shape (another number of classes) is left
out and starts fresh.
"""

import pickle
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from service.repository.store import sha256_file
from training.errors import UnusableWeights
from training.models import create_model, head_of

HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")  # resnet18-f37072fd.pth -> f37072fd
UNPICKLER_FACT = re.compile(r"WeightsUnpickler error:\s*(.*?)(?: was not an allowed global|\n|$)", re.DOTALL)
LISTED = 3  # keys named per kind of problem; the rest are counted


@dataclass(frozen=True)
class WeightsFile:
    name: str  # the file name, without directories
    sha256: str  # of the whole file
    state: dict[str, torch.Tensor]


def read_weights_file(path: Path) -> WeightsFile:
    """The state_dict in ``path``; raises ``UnusableWeights`` when the file is missing, does not match the
    sha256 prefix in its name, is refused by ``weights_only=True``, or is not a name -> tensor mapping."""
    path = Path(path)
    if not path.is_file():
        raise UnusableWeights(f"{path}: no such file")
    sha256 = sha256_file(path)
    named = HASH_IN_NAME.search(path.name)
    if named and not sha256.startswith(named.group(1)):
        raise UnusableWeights(
            f"{path.name}: the name says its sha256 starts with {named.group(1)}, the file's starts with "
            f"{sha256[: len(named.group(1))]}: the download is incomplete or altered; download it again"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is a page of advice; its one fact is after "WeightsUnpickler error:"
        fact = UNPICKLER_FACT.search(str(exc))
        reason = fact.group(1).strip() if fact else "it holds more than tensors"
        raise UnusableWeights(
            f"{path.name}: refused by torch.load(weights_only=True), which loads only tensors and plain "
            f"containers ({reason}); save a plain state_dict: torch.save(model.state_dict(), path)"
        ) from None
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnusableWeights(f"{path.name}: not a torch weights file ({reason})") from None
    if not isinstance(state, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise UnusableWeights(
            f"{path.name}: holds a {type(state).__name__}, expected a state_dict (parameter name -> tensor), "
            "as torchvision's weights files are"
        )
    return WeightsFile(path.name, sha256, dict(state))


def fit_weights(
    weights: WeightsFile, model: nn.Module, *, architecture: str, head: str | None = None
) -> dict[str, torch.Tensor]:
    """The tensors of ``weights`` that ``model`` takes. Every key and shape must be the model's, except
    that when ``head`` (a module name) is given, the head's tensors may have other shapes: then they are
    left out and the model keeps its own. Raises ``UnusableWeights`` listing what does not fit."""
    expected = model.state_dict()
    state = weights.state
    head_prefix = f"{head}." if head else None
    other_head = {
        key
        for key, value in expected.items()
        if head_prefix and key.startswith(head_prefix) and key in state and state[key].shape != value.shape
    }
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [
        f"{key} {tuple(state[key].shape)} in the file, {tuple(value.shape)} in the model"
        for key, value in expected.items()
        if key in state and key not in other_head and state[key].shape != value.shape
    ]
    problems = [
        f"{kind}: {_listed(keys)}"
        for kind, keys in (("missing", missing), ("unexpected", unexpected), ("other shape", mismatched))
        if keys
    ]
    if problems:
        raise UnusableWeights(
            f"{weights.name} does not fit {architecture} ({len(state)} tensors in the file, {len(expected)} in "
            f"the model); " + "; ".join(problems)
        )
    return {key: value for key, value in state.items() if key not in other_head}


def initial_weights(
    path: Path, *, architecture: str, in_channels: int, num_classes: int, echo: bool
) -> dict[str, torch.Tensor]:
    """``--init-weights``: the file's tensors for ``architecture`` with this dataset's channels and classes,
    the head left out (and said so when ``echo``) when the file's has another number of classes."""
    weights = read_weights_file(path)
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = create_model(architecture, in_channels=in_channels, num_classes=num_classes)
    head = head_of(architecture)
    fitted = fit_weights(weights, model, architecture=architecture, head=head)
    if echo:
        left_out = sorted(set(weights.state) - set(fitted))
        note = (
            f"; head {head} not loaded ({_listed(left_out)}: the file's classes are not this dataset's "
            f"{num_classes}), it starts fresh"
            if left_out
            else ""
        )
        print(f"# init weights: {weights.name} (sha256 {weights.sha256[:12]}…){note}", file=sys.stderr)
    return fitted


def _listed(keys: list[str]) -> str:
    more = f" and {len(keys) - LISTED} more" if len(keys) > LISTED else ""
    return ", ".join(keys[:LISTED]) + more
