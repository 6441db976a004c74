"""``resnet18``, ``resnet34``, ``resnet50``: torchvision's ResNet, never with downloaded weights.

Only the stem and the head change: the first conv takes any number of input channels and the final
``fc`` has ``num_classes`` outputs. Parameter names are torchvision's (``conv1``, ``layer1.0.conv1``,
``fc``...), so per-group learning rates can address the head as ``fc*``.

``small_input=True`` swaps the ImageNet stem (7x7 stride-2 conv, then a stride-2 max-pool: a 28 px image
is 7x7 before the first block) for a 3x3 stride-1 conv without max-pool, the usual choice for inputs of
64 px or less. The registry builds the torchvision stem; call ``build_resnet`` for the small one.
"""

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from training.errors import CheckpointError, UnknownModel

# name -> (block, blocks per stage); torchvision's table, He et al. (2016), Table 1.
RESNETS: dict[str, tuple[type[BasicBlock | Bottleneck], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}
STEM_WIDTH = 64  # torchvision's ResNet.inplanes before layer1


def build_resnet(name: str, *, in_channels: int, num_classes: int, small_input: bool = False) -> ResNet:
    try:
        block, layers = RESNETS[name]
    except KeyError:
        raise UnknownModel(name, RESNETS) from None
    model = ResNet(block, list(layers), num_classes=num_classes)
    if small_input:
        model.conv1 = nn.Conv2d(in_channels, STEM_WIDTH, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    else:
        model.conv1 = nn.Conv2d(in_channels, STEM_WIDTH, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision does
    return model


# ---------------------------------------------------------------------------------------------------------
# Loading weights this project saved (weights.pt: a plain state_dict)
# ---------------------------------------------------------------------------------------------------------


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a state_dict saved with ``torch.save(model.state_dict(), path)`` into ``model``, strictly.

    Loads with ``weights_only=True`` (no pickled code runs) onto the CPU; the tensors are then copied
    into ``model`` wherever it lives. Raises ``CheckpointError`` when the file is missing or unreadable,
    is not a state_dict, or was saved from another architecture; the message names both architectures
    (``resnet18 (3 input channels, 10 classes)`` where it can tell) and the first mismatched keys.
    Works for any model; ResNet variants are recognised by name.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a weights file saved by this project ({first_line})") from exc
    if not isinstance(state, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise CheckpointError(
            f"{path}: holds a {type(state).__name__}, expected a state_dict (parameter name -> tensor)"
        )

    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [
        f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    if missing or unexpected or mismatched:
        problems = [
            f"{label}: {_first(items)}"
            for label, items in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape file vs model", mismatched),
            )
            if items
        ]
        raise CheckpointError(
            f"{path}: weights are for {describe_architecture(state)}, the model is "
            f"{describe_architecture(expected)}; " + "; ".join(problems)
        )
    model.load_state_dict(state)


def describe_architecture(state: Mapping[str, torch.Tensor]) -> str:
    """A short human name for the architecture a state_dict belongs to, e.g. ``resnet18 (1 input
    channels, 10 classes)``; for non-ResNets, the number of tensors and the first key."""
    if "conv1.weight" in state and "fc.weight" in state and "layer1.0.conv1.weight" in state:
        block = Bottleneck if "layer1.0.conv3.weight" in state else BasicBlock
        layers = tuple(_count_blocks(state, f"layer{stage}.") for stage in range(1, 5))
        name = next(
            (name for name, spec in RESNETS.items() if spec == (block, layers)),
            f"a ResNet with {block.__name__} x {layers}",
        )
        stem = state["conv1.weight"]  # (64, in_channels, k, k)
        small = ", small-input stem" if stem.shape[-1] == 3 else ""
        return f"{name} ({stem.shape[1]} input channels, {state['fc.weight'].shape[0]} classes{small})"
    first = next(iter(state), None)
    return f"a non-ResNet model ({len(state)} tensors, first {first!r})"


def _count_blocks(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    return len({key[len(prefix) :].split(".", 1)[0] for key in state if key.startswith(prefix)})


def _first(items: list[str], limit: int = 3) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
