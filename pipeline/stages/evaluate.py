"""The `evaluate` stage: every trained run of the sweep on its test split, into metrics/<run id>.json.

A run whose checkpoint and evaluation settings are unchanged since it was evaluated is not evaluated
again. The metrics files are DVC metrics: `dvc metrics show`, `dvc exp show`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..data import sha256
from ..params import EvaluateParams, load_section
from ..provenance import git_rev
from .io import check_writable, write_json
from .train import DATA, RUNS, wandb_logger

METRICS = Path("metrics")
METRICS_VERSION = 2  # bump when the fields of a metrics file change


def evaluate_run(run_id: str, train: dict, params: EvaluateParams, data: Path, runs: Path, metrics: Path) -> dict:
    import lightning as L
    import torch

    from ..training import ChainDataModule, ChainModule
    from .train import Run

    folder = runs / run_id
    ckpt = folder / "checkpoints" / "best.ckpt"
    if not ckpt.exists():
        ckpt = folder / "checkpoints" / "last.ckpt"
    # the checkpoint, the settings and the metrics format: any change re-evaluates
    key = f"{sha256(ckpt)[:16]}:{params.batch_size}:{params.generation_samples}:v{METRICS_VERSION}"
    out = metrics / f"{run_id}.json"
    if out.exists() and json.loads(out.read_text()).get("evaluation_key") == key:
        return json.loads(out.read_text())
    run = Run(**train["run"])
    dm = ChainDataModule(data / run.dataset, params.batch_size, eval_batch_size=params.batch_size)
    module = ChainModule.load_from_checkpoint(ckpt, map_location="cpu")
    module.test_generation = params.generation_samples
    gpu = torch.cuda.is_available()
    L.seed_everything(run.seed, verbose=False)
    logger = wandb_logger(run, train["sweep"], dm.meta, "evaluate", {"run": train["run"], "evaluate": params.__dict__,
                                                                   "checkpoint": ckpt.name, "git_rev": git_rev()})
    trainer = L.Trainer(accelerator="auto", devices=1, precision="bf16-mixed" if gpu else "32-true", logger=logger,
                        enable_progress_bar=sys.stderr.isatty(), enable_model_summary=False)
    scores = trainer.test(module, dm, verbose=False)[0]
    logger.experiment.finish()
    result = {
        "evaluation_key": key, "run": run.id, "task": train["task"], "n": train["n"], "attention": run.attention,
        "width": run.width, "seed": run.seed, "seq_len": train["max_len"],
        "exact_match": scores["test/exact_match"], "answer_acc": scores["test/answer_acc"],
        "token_acc": scores["test/token_acc"], "answer_samples": int(scores["test/generated"]),
        "graded_acc": scores["test/exact_match"] if dm.task.unique_chain else scores["test/answer_acc"],
        "params": train["params"], "flops_per_sequence": train["flops_per_sequence"]["total"],
        "train_seconds": train["train_seconds"], "train_tokens_per_s": train["train_tokens_per_s"],
        "steps": train["steps"], "device": train["device"], "checkpoint": ckpt.name,
        "sweep": train.get("sweep"), "git_rev": git_rev(), "versions": versions(),
    }
    write_json(out, result)
    return result


def versions() -> dict:
    import platform

    import lightning
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "lightning": lightning.__version__}


def run(params_path: Path = Path("params.yaml"), data: Path = DATA, runs: Path = RUNS, metrics: Path = METRICS) -> None:
    params = load_section(params_path, "evaluate")
    finished = sorted(runs.glob("*/train.json")) if runs.is_dir() else []
    if not finished:
        raise FileNotFoundError(f"no trained runs in {runs}: run the train stage first")
    check_writable(metrics)
    wanted = set()
    for done in finished:
        run_id = done.parent.name
        wanted.add(f"{run_id}.json")
        result = evaluate_run(run_id, json.loads(done.read_text()), params, data, runs, metrics)
        print(f"evaluate: {run_id}: graded accuracy {result['graded_acc']:.4f} "
              f"(exact match {result['exact_match']:.4f}, answer {result['answer_acc']:.4f})", file=sys.stderr)
    for stale in metrics.glob("*.json"):
        if stale.name not in wanted:
            stale.unlink()
