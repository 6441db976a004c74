"""Parameter updates: optimizers, param groups and learning-rate policies, each selectable by name.

Everything here is chosen by a string name plus a flat mapping of options, the same words in the CLI,
config files and the fine-tuning API::

    groups = parameter_groups(model, weight_decay=5e-4, lr_multipliers={"fc*": 1.0, "*": 0.1})
    optimizer = build_optimizer("nesterov", groups, learning_rate=0.05, weight_decay=5e-4,
                                options={"momentum": 0.9})
    scheduler = build_scheduler(optimizer, "cosine", {}, total_iters=10_000, warmup_iters=500)
    # per iteration: optimizer.step(closure if needs_closure(optimizer) else None); scheduler.step()

Bad names and values fail with UnknownOptimizer / UnknownPolicy / InvalidHyperparameter before any
training starts.
"""

from training.optim.ftrl import Ftrl
from training.optim.optimizers import (
    build_optimizer,
    needs_closure,
    optimizer_defaults,
    optimizer_help,
    optimizer_names,
    resolve_optimizer_options,
    takes_weight_decay,
)
from training.optim.param_groups import parameter_groups
from training.optim.policies import (
    LearningRatePolicy,
    build_scheduler,
    policy_defaults,
    policy_help,
    policy_names,
    resolve_policy_options,
)

__all__ = [
    "Ftrl",
    "LearningRatePolicy",
    "build_optimizer",
    "build_scheduler",
    "needs_closure",
    "optimizer_defaults",
    "optimizer_help",
    "optimizer_names",
    "parameter_groups",
    "policy_defaults",
    "policy_help",
    "policy_names",
    "resolve_optimizer_options",
    "resolve_policy_options",
    "takes_weight_decay",
]
