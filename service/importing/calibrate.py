"""Temperature scaling (Guo et al., 2017) and expected calibration error, in numpy for the service side.

The same definitions as training/calibration.py (which uses torch): one scalar T divides the logits,
fitted by minimising the negative log-likelihood, kept in [0.05, 20]; ECE over 15 equal-width confidence
bins. T never changes the argmax, so accuracy is untouched.
"""

import math

import numpy as np

from service.evaluation.report import ECE_BINS, calibration_bins

T_MIN, T_MAX = 0.05, 20.0
GOLDEN = (math.sqrt(5) - 1) / 2


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    probabilities: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return probabilities


def negative_log_likelihood(logits: np.ndarray, targets: np.ndarray, inverse_temperature: float) -> float:
    scaled = logits.astype(np.float64) * inverse_temperature
    top = scaled.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(scaled - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_sum - scaled[np.arange(len(targets)), targets]))


def fit_temperature(logits: np.ndarray, targets: np.ndarray, *, iterations: int = 100) -> float:
    """The T in [0.05, 20] that minimises the NLL of softmax(logits / T); 1.0 without data.

    The NLL is convex in 1/T (a log-sum-exp of linear functions, minus a linear one), so a golden-section
    search over 1/T finds its minimum; 100 steps narrow the bracket by a factor of 10^21.
    """
    if len(targets) == 0:
        return 1.0
    low, high = 1 / T_MAX, 1 / T_MIN
    for _ in range(iterations):
        left, right = high - GOLDEN * (high - low), low + GOLDEN * (high - low)
        if negative_log_likelihood(logits, targets, left) <= negative_log_likelihood(logits, targets, right):
            high = right
        else:
            low = left
    return float(min(max(1 / ((low + high) / 2), T_MIN), T_MAX))


def expected_calibration_error(probabilities: np.ndarray, targets: np.ndarray, *, bins: int = ECE_BINS) -> float:
    """The confidence-vs-accuracy gap, averaged over equal-width confidence bins (low, high] weighted by count
    (NaN without images): the evaluation report's definition."""
    return calibration_bins(probabilities, targets, bins=bins)[1]
