"""Temperature scaling (Guo et al., 2017) and expected calibration error.

One scalar T divides the logits: softmax(logits / T). It is fitted on the validation split by
minimising the negative log-likelihood; it never changes the argmax, so accuracy is untouched.
"""

import math
from itertools import pairwise

import torch
import torch.nn.functional as F

ECE_BINS = 15


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, *, max_iter: int = 200) -> float:
    """The T in [0.05, 20] that minimises the NLL of softmax(logits / T). 1.0 when there is no data."""
    if logits.numel() == 0:
        return 1.0
    logits = logits.detach().double()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    if not math.isfinite(temperature):
        return 1.0
    return min(max(temperature, 0.05), 20.0)


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, *, bins: int = ECE_BINS) -> float:
    """ECE: the confidence-vs-accuracy gap, averaged over equal-width confidence bins weighted by count."""
    if probabilities.numel() == 0:
        return math.nan
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == labels).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=probabilities.dtype)
    total = 0.0
    for low, high in pairwise(edges):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            gap = (confidence[in_bin].double().mean() - correct[in_bin].mean()).abs()
            total += float(gap) * int(in_bin.sum()) / len(labels)
    return total


def calibrated_probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.softmax(logits / temperature, dim=1)
