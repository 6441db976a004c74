"""Polyak averaging: an exponential moving average (EMA) of the weights, kept beside the trained ones.

After every optimizer step::

    decay_t = min(decay, (1 + t) / (10 + t))      # t: steps averaged so far
    ema     = decay_t * ema + (1 - decay_t) * weights

The warm-up of ``decay_t`` is TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` rule: without it a
decay of 0.999 would remember the random initial weights for about a thousand steps, most of a short run.

BatchNorm's running mean and variance are averaged with the same decay as the parameters (as timm's
``ModelEmaV2`` does), so the averaged network carries statistics that belong to weights near its own,
with no extra pass over the data; integer buffers (``num_batches_tracked``) are copied.
"""

import copy

import torch
from torch import nn


class WeightAverage:
    """An EMA copy of ``source`` (``model``, in eval mode, never trained directly); ``update()`` after each step."""

    def __init__(self, source: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the EMA decay must be between 0 and 1 (exclusive), got {decay}")
        self.source = source
        self.decay = decay
        self.updates = 0  # steps averaged so far
        self.model = copy.deepcopy(source).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        decay = self.current_decay()
        averaged = self.model.state_dict()
        for key, value in self.source.state_dict().items():
            target = averaged[key]
            if target.is_floating_point():
                target.lerp_(value.detach().to(target.dtype), 1.0 - decay)  # target += (1 - decay)(value - target)
            else:
                target.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict[str, object]:
        """For the checkpoint: the averaged tensors (on the CPU) and the step count."""
        return {"model": {k: v.cpu() for k, v in self.model.state_dict().items()}, "updates": self.updates}

    def load_state_dict(self, state: dict[str, object]) -> None:
        weights = state["model"]
        if not isinstance(weights, dict):
            raise ValueError("an EMA state holds a state_dict under 'model'")
        self.model.load_state_dict(weights)
        self.updates = int(state["updates"])  # type: ignore[call-overload]
