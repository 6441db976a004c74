"""The registries hold the names the service lists (service/jobs/hyperparameters.py), checked at import."""

import pytest

from service.jobs.hyperparameters import LR_POLICIES, OPTIMIZERS
from training.optim import optimizer_names, policy_names
from training.optim.hyperparameters import check_same_names


def test_the_registries_hold_the_services_names() -> None:
    assert (tuple(optimizer_names()), tuple(policy_names())) == (OPTIMIZERS, LR_POLICIES)


@pytest.mark.parametrize(
    ("registered", "listed", "message"),
    [
        (["sgd", "adamax"], ["sgd"], "only in the registry: adamax; give both"),
        (["sgd"], ["sgd", "ftrl"], "only in the service's list: ftrl; give both"),
        (["sgd", "adam"], ["sgd", "ftrl"], "only in the registry: adam; only in the service's list: ftrl"),
        (["adam", "sgd"], ["sgd", "adam"], r"the same names in another order \(registry: adam, sgd\)"),
    ],
)
def test_a_difference_stops_the_import_naming_it(registered: list[str], listed: list[str], message: str) -> None:
    with pytest.raises(
        RuntimeError, match=f"the optimizer registry and service/jobs/hyperparameters.py differ: {message}"
    ):
        check_same_names("optimizer", registered, listed)


def test_the_same_names_pass() -> None:
    check_same_names("lr_policy", ["fixed", "step"], ("fixed", "step"))
