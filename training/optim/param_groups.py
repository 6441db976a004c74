"""Split a model's trainable parameters into optimizer param groups: weight decay on/off, learning-rate
multipliers per module name.

Two decisions per parameter:

* **weight decay**: by default none on biases (parameters named ``bias``) and on every parameter of a
  normalization layer (BatchNorm/InstanceNorm — any ``_NormBase`` — GroupNorm, LayerNorm, RMSNorm).
  Decaying a norm layer's scale or a bias toward 0 only fights the normalization; it does not regularize.
  ``decay_norm_and_bias=True`` decays everything.
* **learning-rate multiplier**: ``lr_multipliers`` maps fnmatch patterns over the *owning module's* dotted
  name (``"head"``, ``"backbone.layer4.0.conv1"``; the root module's own parameters have the name ``""``)
  to a multiplier. Patterns are tried **in the mapping's order and the first match wins**, so put specific
  patterns before catch-alls: ``{"head*": 1.0, "*": 0.1}`` trains a new head at the full rate and a
  pretrained backbone at a tenth. Unmatched modules get 1.0. A pattern that ends up matching no trainable
  parameter (a typo, or shadowed by an earlier pattern) is an error, not a silent no-op.

The optimizer turns ``lr_multiplier`` into ``lr = learning_rate × lr_multiplier`` (``build_optimizer``),
and the learning-rate policy multiplies every group's own rate, so the ratios hold for the whole run.

Frozen parameters (``requires_grad=False``) are left out; every trainable parameter lands in exactly one
group, even when modules share it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from training.errors import InvalidHyperparameter, TrainingError
from training.optim.hyperparameters import NON_NEGATIVE, POSITIVE, check_number

NORM_LAYERS: tuple[type[nn.Module], ...] = (_NormBase, nn.GroupNorm, nn.LayerNorm, nn.RMSNorm)


def parameter_groups(
    model: nn.Module,
    *,
    weight_decay: float,
    decay_norm_and_bias: bool = False,
    lr_multipliers: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Param groups ``{"params", "weight_decay", "lr_multiplier", "name"}`` for ``build_optimizer``.

    ``name`` reads like ``"decay x1"`` or ``"no_decay x0.1"``. Groups appear in the order their first
    parameter appears in ``model.named_modules()``; empty groups are omitted.

    Raises InvalidHyperparameter for a negative weight_decay, a multiplier that is not > 0, or a pattern
    that matches no trainable parameter; TrainingError when the model has no trainable parameter.
    """
    weight_decay = check_number("weight_decay", weight_decay, NON_NEGATIVE)
    patterns = {
        pattern: check_number(f"lr_multipliers[{pattern!r}]", multiplier, POSITIVE)
        for pattern, multiplier in (lr_multipliers or {}).items()
    }
    used: set[str] = set()

    groups: dict[tuple[bool, float], dict[str, Any]] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, NORM_LAYERS)
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            decay = decay_norm_and_bias or not (is_norm or param_name == "bias")
            multiplier = 1.0
            for pattern, value in patterns.items():
                if fnmatch.fnmatchcase(module_name, pattern):
                    multiplier = value
                    used.add(pattern)
                    break
            key = (decay, multiplier)
            if key not in groups:
                groups[key] = {
                    "params": [],
                    "weight_decay": weight_decay if decay else 0.0,
                    "lr_multiplier": multiplier,
                    "name": f"{'decay' if decay else 'no_decay'} x{multiplier:g}",
                }
            groups[key]["params"].append(param)

    if not seen:
        raise TrainingError(f"{type(model).__name__} has no trainable parameters (all frozen?)")
    unused = [p for p in patterns if p not in used]
    if unused:
        raise InvalidHyperparameter(
            f"lr_multipliers pattern(s) {', '.join(map(repr, unused))} match no trainable parameter's module "
            "(patterns are fnmatch over module names like 'head' or 'layer4.0.conv1'; the first match wins, "
            "so an earlier pattern may take them all)"
        )
    return list(groups.values())
