"""The `train` stage: every run of the sweep (dataset x attention x width x seed) in params.yaml's
`train` section, each into runs/<run id>/.

A run whose settings and dataset are unchanged since it finished is reused, so adding one width to
the sweep trains only the new runs; an interrupted run resumes from its last checkpoint. On a GPU
several small runs train at once in worker processes (`concurrency`), to keep the device busy.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from ..params import Run, TrainParams, load_section
from ..provenance import git_rev
from .io import check_writable, write_json
from .tracking import wandb_options

DATA = Path("data/datasets")
RUNS = Path("runs")


class MissingDataset(FileNotFoundError):
    pass


DATASET_KEYS = ("task", "n", "options", "seed", "generator_version", "max_len", "sha256")
CODE = ("model.py", "training.py", "attention/*.py")  # the code a trained run depends on


def code_hash() -> str:
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for pattern in CODE:
        for path in sorted(root.glob(pattern)):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def run_key(run: Run, params: TrainParams, meta: dict) -> str:
    """What a finished run must match to be reused: its settings, its dataset's checksums and the
    model and training code."""
    blob = json.dumps({"run": run.__dict__, "training": params.training(), "data": meta["sha256"],
                       "code": code_hash()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def wandb_logger(run: Run, sweep: str, meta: dict, job_type: str, config: dict):
    """W&B offline unless WANDB_MODE=online: no network, no account, never a prompt."""
    from lightning.pytorch.loggers import WandbLogger

    options = wandb_options()
    return WandbLogger(
        project=options["project"],
        group=sweep,
        job_type=job_type,
        name=run.id,
        tags=[meta["task"], run.attention, f"n={meta['n']}", f"width={run.width}", f"seed={run.seed}"],
        config=config,
        save_dir=options["dir"],
        offline=options["mode"] == "offline",
        settings=options["settings"],
    )


def train_run(run: Run, params: TrainParams, data: Path = DATA, runs: Path = RUNS) -> dict:
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from ..cost import flops_per_sequence
    from ..training import ChainDataModule, ChainModule

    folder = data / run.dataset
    dm = ChainDataModule(folder, params.batch_size, seed=run.seed)
    meta = dm.meta
    out = runs / run.id
    key = run_key(run, params, meta)
    done = out / "train.json"
    if done.exists() and json.loads(done.read_text()).get("key") == key:
        return {**json.loads(done.read_text()), "reused": True}
    started = out / "run.json"
    resume = out / "checkpoints" / "last.ckpt"
    if not (started.exists() and json.loads(started.read_text()).get("key") == key and resume.exists()):
        resume = None  # a new run, or settings changed: start over
        if out.exists():
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(started, {"key": key, "run": run.__dict__})

    L.seed_everything(run.seed, workers=True, verbose=False)
    gpu = torch.cuda.is_available()
    options = params.attention_options.get(run.attention, {})
    model = {"vocab_size": len(meta["vocab"]), "max_len": meta["max_len"], "width": run.width, "layers": params.layers,
             "heads": params.heads, "dropout": params.dropout, "attention": run.attention, "attention_options": options}
    module = ChainModule(model=model, task={"name": meta["task"], "n": meta["n"], **meta["options"]},
                         optim={"lr": params.lr, "weight_decay": params.weight_decay,
                                "warmup_steps": params.warmup_steps},
                         eos_id=meta["vocab"].index("<eos>"), unique_chain=meta["unique_chain"],
                         val_generation=params.val_generation)
    config = {"run": run.__dict__, "train": params.training(), "sweep": params.sweep, "model": model,
              "dataset": {k: meta[k] for k in DATASET_KEYS},
              "git_rev": git_rev(), "key": key}
    logger = wandb_logger(run, params.sweep, meta, "train", config)
    checkpoints = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor="val/acc", mode="max",
                                  save_top_k=1, enable_version_counter=False)
    # last.ckpt at every validation, improved or not: what an interrupted run resumes from
    latest = ModelCheckpoint(dirpath=out / "checkpoints", save_top_k=0, save_last=True,
                             every_n_train_steps=params.val_every)
    stop = EarlyStopping(monitor="val/acc", mode="max", stopping_threshold=params.stop_at, patience=10**9,
                         check_on_train_epoch_end=False)
    trainer = L.Trainer(
        accelerator="auto", devices=1, precision="bf16-mixed" if gpu else "32-true",
        max_steps=params.max_steps, val_check_interval=params.val_every, check_val_every_n_epoch=None,
        gradient_clip_val=params.grad_clip or None, deterministic=not gpu, logger=logger,
        callbacks=[checkpoints, latest, stop], enable_progress_bar=sys.stderr.isatty(), enable_model_summary=False,
        log_every_n_steps=max(1, min(50, params.val_every)), default_root_dir=out, num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(module, dm, ckpt_path=resume)
    seconds = time.perf_counter() - start
    if trainer.interrupted:  # Lightning returns normally on Ctrl-C: never record that as finished
        logger.experiment.finish(exit_code=1)
        raise KeyboardInterrupt(f"run {run.id} interrupted; the next run of the stage resumes it")
    mean_len = float(dm.splits["train"].lengths.float().mean())
    tokens = trainer.global_step * params.batch_size * mean_len
    result = {
        "key": key, "run": run.__dict__, "sweep": params.sweep,
        "task": meta["task"], "n": meta["n"], "max_len": meta["max_len"],
        "steps": trainer.global_step, "train_seconds": seconds, "train_tokens_per_s": tokens / seconds,
        "best_val_acc": float(checkpoints.best_model_score) if checkpoints.best_model_score is not None else None,
        "stopped_early": trainer.global_step < params.max_steps,
        "params": sum(p.numel() for p in module.model.parameters()),
        "flops_per_sequence": flops_per_sequence(meta["max_len"], run.width, params.layers, params.heads,
                                                 len(meta["vocab"]), run.attention, **_cost_options(run, options)),
        "device": torch.cuda.get_device_name() if gpu else "cpu", "resumed": resume is not None,
    }
    logger.experiment.summary.update({k: v for k, v in result.items() if isinstance(v, int | float)})
    logger.experiment.finish()
    write_json(done, result)
    return result


def _cost_options(run: Run, options: dict) -> dict:
    if run.attention != "sparse":
        return {}
    return {k: options[k] for k in ("block", "summary", "pattern") if k in options}


def _check_datasets(params: TrainParams, data: Path) -> None:
    for name in params.datasets:
        if not (data / name / "meta.json").exists():
            raise MissingDataset(f"train.datasets: dataset {name!r} not found in {data} (is it in generate.tasks?)")


def run(params_path: Path = Path("params.yaml"), data: Path = DATA, runs: Path = RUNS) -> None:
    params = load_section(params_path, "train")  # every bad value fails here, before any training
    _check_datasets(params, data)
    check_writable(runs)
    import torch

    workers = params.concurrency or (min(8, len(params.runs)) if torch.cuda.is_available() else 1)
    todo = params.runs
    if workers == 1:
        for r in todo:
            _report(train_run(r, params, data, runs))
    else:  # several processes share the GPU; each trains its runs one after the other
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for result in pool.map(train_run, todo, [params] * len(todo), [data] * len(todo), [runs] * len(todo)):
                _report(result)
    wanted = {r.id for r in todo}
    for stale in sorted(p for p in runs.iterdir() if p.is_dir() and p.name not in wanted):
        if (stale / "run.json").exists():  # a run no longer in the sweep: only what this stage wrote
            shutil.rmtree(stale)


def _report(result: dict) -> None:
    acc = result["best_val_acc"]
    how = "reused" if result.get("reused") else f"{result['steps']} steps, {result['train_seconds']:.1f}s"
    print(f"train: {result['run']['dataset']} {result['run']['attention']} w{result['run']['width']} "
          f"s{result['run']['seed']}: {how}, best val acc {acc if acc is None else round(acc, 4)}", file=sys.stderr)
