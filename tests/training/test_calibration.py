import torch

from training.calibration import calibrated_probabilities, expected_calibration_error, fit_temperature


def overconfident_logits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose true temperature is 3: scaled-up versions of calibrated ones."""
    generator = torch.Generator().manual_seed(seed)
    calibrated = torch.randn(4000, 5, generator=generator)
    labels = torch.multinomial(torch.softmax(calibrated, dim=1), 1, generator=generator).squeeze(1)
    return calibrated * 3.0, labels


def test_temperature_recovers_the_scale_and_lowers_ece() -> None:
    logits, labels = overconfident_logits()
    temperature = fit_temperature(logits, labels)
    assert 2.6 < temperature < 3.4
    before = expected_calibration_error(calibrated_probabilities(logits, 1.0), labels)
    after = expected_calibration_error(calibrated_probabilities(logits, temperature), labels)
    assert after < before / 3


def test_temperature_never_changes_the_prediction() -> None:
    logits, _ = overconfident_logits()
    assert torch.equal(calibrated_probabilities(logits, 2.7).argmax(1), logits.argmax(1))


def test_ece_of_a_perfectly_calibrated_case() -> None:
    probabilities = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(probabilities, torch.tensor([0, 1])) == 0.0
    assert expected_calibration_error(probabilities, torch.tensor([1, 0])) == 1.0


def test_no_validation_data_means_temperature_one() -> None:
    assert fit_temperature(torch.empty(0, 3), torch.empty(0, dtype=torch.long)) == 1.0
