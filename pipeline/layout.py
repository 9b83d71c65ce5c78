"""Where the pipeline's files live, defined once: every stage and command takes its paths from here
(dvc.yaml names the same folders as the stages' outputs)."""

from __future__ import annotations

from pathlib import Path

from .data import DataError, sha256

PARAMS = Path("params.yaml")
DATA = Path("data/datasets")  # one folder per dataset: <task>_n<N>/
RUNS = Path("runs")  # one folder per run: <run id>/ (model.ckpt, train.json)
SWEEP = "sweep.json"  # runs/sweep.json: the runs of the current sweep, which evaluate grades
RESULTS = Path("results")  # <run id>.json: what a run achieved (determined by its inputs)
RUNTIME_TRAIN = Path("runtime/train")  # <run id>.json: seconds, device, revision of its training
RUNTIME_EVALUATE = Path("runtime/evaluate")  # the same of its evaluation
METRICS = Path("metrics.json")  # the few numbers `dvc metrics show` compares
REPORTS = Path("reports")  # report.md, figures/, plots/, runtime/
PAPER = Path("reports/paper")  # the paper's grid, trained on GPUs: cells.json (landed), report.md, figures/
PAPER_CELLS = PAPER / "cells.json"  # every landed cell's record, one list (a file per cell would be hundreds)
RECORDS = (RUNTIME_TRAIN, RESULTS, RUNTIME_EVALUATE)  # git-tracked, one <run id>.json each


def check_weights(out: Path, record: dict) -> Path:
    """A finished run's `model.ckpt`, once it matches the checksum in its train.json (`record`)."""
    model = out / "model.ckpt"
    if not model.is_file() or sha256(model) != record.get("checkpoint_sha256"):
        raise DataError(f"{model}: missing or does not match the checksum in {out / 'train.json'} "
                        f"(delete {out} and run the train stage to train it again)")
    return model
