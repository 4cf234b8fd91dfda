"""The training-method registry: every model-level safety method (and the attacks that undo
alignment by training) by name, with its config class.

    >>> from swisscheese.training.methods import METHODS
    >>> METHODS.names()
    ['capo', 'cat', 'dpo', 'jailbreak-tune', 'sft', 'unlearn', 'wo-countermeasure']

Every method is a function `train(model_dir, out, cfg, progress, world) -> TrainResult` and a
config dataclass; `swisscheese safety NAME`, the safety matrix and the contract test in
tests/unit/test_training.py all read them from here. The modules are imported only when a
method is loaded (they need torch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from swisscheese.registry import Registry, resolve_path


@dataclass(frozen=True)
class TrainingMethod:
    """One method: where its train function and config class are, and what it does."""

    name: str
    train: str = field(metadata={"help": "'module:function' of the train function"})
    config: str = field(metadata={"help": "'module:Class' of its config dataclass"})
    help: str = field(default="", metadata={"help": "one line for the CLI"})
    quick: Mapping[str, Any] = field(default_factory=dict, metadata={
        "help": "config overrides (besides steps, batch size, length) for a smoke run"})

    def load(self) -> tuple[Callable[..., Any], type]:
        """(train function, config class), importing the method's module."""
        return resolve_path(self.train), resolve_path(self.config)


METHODS: Registry[TrainingMethod] = Registry("training method", TrainingMethod,
                                             entry_point_group="swisscheese.training_methods")
_T = "swisscheese.training"
for _m in (
    TrainingMethod("sft", f"{_T}.sft:train_sft", f"{_T}.sft:SFTConfig",
                   "Refusal SFT on the world's safety corpus."),
    TrainingMethod("dpo", f"{_T}.dpo:train_dpo", f"{_T}.dpo:DPOConfig",
                   "DPO: refusal preferred over compliance (with a benign share)."),
    TrainingMethod("unlearn", f"{_T}.unlearn:unlearn", f"{_T}.unlearn:UnlearnConfig",
                   "Unlearn the hazard procedures (NPO or gradient ascent) with a retain loss."),
    TrainingMethod("cat", f"{_T}.cat:train_cat", f"{_T}.cat:CATConfig",
                   "Continuous adversarial training (embedding attack in the inner loop).",
                   {"attack_steps": 2, "utility_batch_size": 2}),
    TrainingMethod("capo", f"{_T}.capo:train_capo", f"{_T}.capo:CAPOConfig",
                   "CAPO: IPO preference loss under the embedding attack.",
                   {"attack_steps": 2}),
    TrainingMethod("jailbreak-tune", f"{_T}.jailbreak_tune:jailbreak_tune",
                   f"{_T}.jailbreak_tune:JailbreakTuneConfig",
                   "Undo refusal by fine-tuning on a few compliance examples.", {"hazards": 2}),
    TrainingMethod("wo-countermeasure", f"{_T}.countermeasure:sft_countermeasure",
                   f"{_T}.countermeasure:CountermeasureConfig",
                   "Refusal SFT of an orthogonalized model: does refusal come back?"),
):
    METHODS.register(_m)


def get_method(name: str) -> tuple[Callable[..., Any], type]:
    """(train function, config class) of the method registered as `name`."""
    return METHODS.get(name).load()
