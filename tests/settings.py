"""Small, valid parameter sections for tests, each test stating only what it changes.

    from settings import train_section
    train_section(attentions=["linear"], max_steps=48)

A change must name a parameter of the section (a typo raises KeyError); its value is not checked,
so that tests can hand the stages bad values on purpose. The values themselves are the tests' own,
independent of params.yaml and conf/, so a change of the default profile cannot break a test.
"""

from __future__ import annotations

import copy

from pipeline.params import TrainParams

# a one-run sweep that trains in seconds on the CPU: LIS n=5, the standard model at width 16
TRAIN = {
    "sweep": "test-sweep", "datasets": ["lis_n5"], "attentions": ["standard"], "widths": [16], "seeds": [0],
    "layers": 2, "heads": 4, "dropout": 0.1, "attention_options": {}, "batch_size": 32, "lr": 0.003,
    "weight_decay": 0.01, "warmup_steps": 5, "decay_fraction": 0.75, "grad_clip": 1.0, "max_steps": 20,
    "val_every": 5, "stop_at": 0.995, "val_generation": 16, "concurrency": 1, "compile": "auto",
}  # the optional keys (TrainParams.OPTIONAL: devices, lr_width) are left out: their defaults apply

# the datasets of that sweep: 300 LIS n=5 samples to train on
GENERATE = {"seed": 1, "train_size": 300, "val_size": 24, "test_size": 24,
            "tasks": {"lis": {"sizes": [5], "options": {"number_range": None}}}}
GENERATE_KEYS = ("seed", "train_size", "val_size", "test_size", "tasks")  # GenerateParams.parse's keys


def _changed(base: dict, keys, changes: dict, section: str) -> dict:
    unknown = sorted(set(changes) - set(keys))
    if unknown:
        raise KeyError(f"not a {section} parameter: {', '.join(unknown)} (known: {', '.join(keys)})")
    return {**copy.deepcopy(base), **changes}  # a fresh dictionary: a test may change what it gets


def train_section(**changes) -> dict:
    """A complete `train` section (a small sweep, see TRAIN) with `changes` applied."""
    return _changed(TRAIN, TrainParams.KEYS, changes, "train")


def training_settings(**changes) -> dict:
    """The settings `pipeline.training.fit` trains one run with (TrainParams.fit_settings) in the sweep
    of `train_section(**changes)`."""
    return TrainParams.parse(train_section(**changes)).fit_settings()


def generate_section(**changes) -> dict:
    """A complete `generate` section (the datasets of TRAIN, see GENERATE) with `changes` applied."""
    return _changed(GENERATE, GENERATE_KEYS, changes, "generate")
