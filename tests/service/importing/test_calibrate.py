"""The numpy temperature scaling and ECE of imports agree with training's torch ones."""

import numpy as np
import pytest

from service.importing.calibrate import expected_calibration_error, fit_temperature, softmax


def overconfident(seed: int = 0, n: int = 400, classes: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, classes, n)
    logits = rng.standard_normal((n, classes)) * 2
    logits[np.arange(n), targets] += 1.5  # right more often than not
    return (logits * 3).astype(np.float32), targets  # ... and far too sure of itself


def test_the_fitted_temperature_is_trainings() -> None:
    torch = pytest.importorskip("torch")
    from training.calibration import calibrated_probabilities
    from training.calibration import expected_calibration_error as torch_ece
    from training.calibration import fit_temperature as torch_fit

    logits, targets = overconfident()
    temperature = fit_temperature(logits, targets)
    assert temperature > 1.5  # it cools an overconfident model
    assert temperature == pytest.approx(torch_fit(torch.from_numpy(logits), torch.from_numpy(targets)), rel=1e-3)
    for t in (1.0, temperature):
        ours = expected_calibration_error(softmax(logits, t), targets)
        theirs = torch_ece(calibrated_probabilities(torch.from_numpy(logits), t), torch.from_numpy(targets))
        assert ours == pytest.approx(theirs, abs=1e-6)
    assert expected_calibration_error(softmax(logits, temperature), targets) < expected_calibration_error(
        softmax(logits), targets
    )


def test_no_data_means_no_scaling() -> None:
    assert fit_temperature(np.zeros((0, 3), dtype=np.float32), np.zeros(0, dtype=np.int64)) == 1.0
