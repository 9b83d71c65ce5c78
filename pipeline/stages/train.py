"""The `train` stage: every run of the sweep (dataset x attention x width x seed) in params.yaml's
`train` section, each into runs/<run id>/.

Bookkeeping (the training itself is `training.fit`):
- A finished run is reused while its key matches: its settings, its dataset's checksums and the
  code that decides its weights (the import closure of `pipeline.training`, by syntax tree). Code
  that only evaluation, the cost model or the report use is not in it.
- Runs that leave the sweep stay in runs/ (a library of what was trained); `runs/sweep.json` names
  the current sweep, which is what the evaluate stage grades. Growing the sweep back reuses them.
- An interrupted run resumes from its last checkpoint (exactly: `training.py`), in the same W&B run,
  and its training time sums every segment, recorded as it goes in runs/<run>/resume.json.
- Every dataset is checked against its checksums first; a mismatch is an error that names the file.
- A run whose loss became NaN or infinite is recorded as diverged, with the reason; the sweep goes on.
- What a run's result is (runs/<run>/train.json, model.ckpt) is determined by its inputs; what
  depends on the machine and the moment (seconds, device, revision) goes to runtime/train/<run>.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import uuid
from pathlib import Path

from ..data import DataError, read_meta, verify
from ..deps import code_hash
from ..execution import cli
from ..execution.capacity import gpu_workers, peak_gib
from ..execution.distributed import Group, distributed, launch
from ..execution.io import check_writable, remove_temporaries, say, write_json
from ..execution.runtime import (
    Failed,
    Interrupted,
    die_with_parent,
    gpu_count,
    interruptible,
    lightning_stops,
    one_line,
    quiet,
    run_all,
    run_each,
    runtime_info,
    stage_pool,
    stopping,
)
from ..execution.tracking import check_tracking, tracking, wandb_logger
from ..layout import DATA, PARAMS, RUNS, RUNTIME_TRAIN, SWEEP, check_weights
from ..params import ParamError, Run, TrainParams, load_section
from ..records import Meta, Resume, TrainRecord, load

DATASET_KEYS = ("task", "n", "options", "seed", "generator_version", "max_len", "sha256")


class RunError(RuntimeError):
    """A run failed for a reason other than divergence; the message names the run."""


def run_key(run: Run, params: TrainParams, meta: dict, code: str | None = None) -> str:
    """What a finished run must match to be reused: its settings, its dataset's checksums and the
    code that trains it (`code`: its hash, where the caller has it already)."""
    blob = json.dumps({"run": run.__dict__, "training": params.training(), "data": meta["sha256"],
                       "code": code or code_hash("pipeline.training")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def check_attention(params: TrainParams) -> None:
    """Attention names and options against the registry (here, not in params.py: it needs torch)."""
    from ..attention import ATTENTION, AttentionError, make_attention

    for i, name in enumerate(params.attentions):
        if name not in ATTENTION:
            raise ParamError(f"train.attentions[{i}]: unknown attention type {name!r} (known: {', '.join(ATTENTION)})")
    for name, options in params.attention_options.items():
        if name not in ATTENTION:
            raise ParamError(f"train.attention_options.{name}: unknown attention type (known: {', '.join(ATTENTION)})")
        try:
            make_attention(name, 64, **options)
        except AttentionError as err:
            raise ParamError(f"train.attention_options.{name}: {err}") from None


def _tidy(out: Path) -> None:
    """Remove what only an unfinished run needs: trainer checkpoints and the resume record."""
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    (out / "resume.json").unlink(missing_ok=True)


def _finished(out: Path, key: str) -> dict | None:
    """The finished run's record if it matches `key`; its weights must match the recorded checksum."""
    record = load(out / "train.json", TrainRecord)
    if record is None or record.get("key") != key:
        return None
    check_weights(out, record)
    _tidy(out)  # in case a stage was killed between recording the run and tidying up
    return record


def _to_train(todo: list[Run], params: TrainParams, data: Path, runs: Path) -> int:
    """How many of the runs look unfinished under their key, from their records alone: what decides
    if a stage needs its process pool. Each run checks again, weights included."""
    code, count = code_hash("pipeline.training"), 0  # hashed once: parsing the code takes ~70 ms a time
    for run in todo:
        try:
            record = load(runs / run.id / "train.json", TrainRecord)
            done = record is not None and record.get("key") == run_key(run, params, read_meta(data / run.dataset),
                                                                       code)
        except Exception:  # a bad record is the run's to report, as it trains again
            done = False
        count += not done
    return count


def _plan(out: Path, key: str) -> dict:
    """What a run needs: {"record"} to reuse it, else {"resume", "state", "created"} (resume.json
    written with a new segment). Rank 0's decision in a DDP training."""
    record = _finished(out, key)
    if record is not None:
        return {"record": record}
    state = load(out / "resume.json", Resume)
    last = out / "checkpoints" / "last.ckpt"
    if state and state.get("key") == key:  # an interrupted attempt: its time and W&B run carry on
        resume = last if last.is_file() else None
    else:  # a new run, or its settings changed: start over
        resume, state = None, None
        if (out / "model.ckpt").exists() and not (out / "train.json").exists():
            say(f"train: {out}: trained weights without their train.json (deleted?): training the run again")
        if out.exists():
            shutil.rmtree(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    state = state or {"key": key, "wandb_id": uuid.uuid4().hex[:12], "segments": []}
    state["segments"].append(0.0)
    write_json(out / "resume.json", state)
    return {"resume": resume, "state": state, "created": created}


def step_mode(params: TrainParams, width: int) -> str:
    """How a run of `width` trains its steps here (`train.compile`, as `training.fit` decides): the CPU
    always runs eagerly."""
    import torch

    from ..training import compile_mode

    return compile_mode(params.compile, width) if torch.cuda.is_available() else "none"


def train_run(run: Run, params: TrainParams, data: Path = DATA, runs: Path = RUNS, runtime: Path = RUNTIME_TRAIN,
              position: str = "", group=None) -> dict:
    """Train (or reuse) one run. `group`: this process's place in a DDP training, where rank 0 plans
    and records and every process trains."""
    from ..training import fit

    stopped = f"train: run {run.id} stopped; its last checkpoint is kept"
    if stopping():  # asked to stop while this run waited: it does not start
        raise Interrupted(f"train: run {run.id} not started")

    folder = data / run.dataset
    meta = read_meta(folder)  # checked against its checksums by `run` before any training
    out = runs / run.id
    key = run_key(run, params, meta)
    rank = group.rank if group else 0
    plan = None
    if rank == 0:
        try:
            plan = _plan(out, key)
        except Exception as err:  # the other processes must not wait for a plan that never comes
            plan = {"error": err}
    plan = group.share(plan) if group else plan
    if "error" in plan:
        raise plan["error"]
    if "record" in plan:
        return {**plan["record"], "reused": True}
    if rank:
        with lightning_stops(stopped):
            fit(folder, meta, out, run.__dict__, params.fit_settings(), resume=plan["resume"])
        return {}
    from ..execution.callbacks import Curve, Progress, SegmentClock

    state, created = plan["state"], plan["created"]
    try:
        config = {"run": run.__dict__, "train": params.fit_settings(), "sweep": params.sweep, "key": key,
                  "dataset": {k: meta[k] for k in DATASET_KEYS}}
        logger = wandb_logger(run, params.sweep, meta, "train", config, run_id=state["wandb_id"])
        clock = SegmentClock(out / "resume.json", state)
        curve = Curve(params.batch_size)
        with lightning_stops(stopped):
            result = fit(folder, meta, out, run.__dict__, params.fit_settings(), logger,
                         [clock, curve, Progress(f"train {position}{run.id}", params.max_steps)], plan["resume"])
        clock.tick(force=True)
    except BaseException as err:
        if tracking():
            import wandb

            if wandb.run is not None:  # this segment's W&B run ends as failed; the next one resumes it
                wandb.run.finish(exit_code=1)
        if created and not (out / "checkpoints" / "last.ckpt").exists():
            shutil.rmtree(out, ignore_errors=True)  # nothing worth resuming: leave no trace of this attempt
        if isinstance(err, Exception) and not isinstance(err, ValueError | OSError):
            raise RunError(f"train: run {run.id} failed: {one_line(err)}") from err
        raise
    record = {"key": key, "run": run.__dict__, "task": meta["task"], "n": meta["n"], "max_len": meta["max_len"],
              **result, "curve": curve.points}
    info = {**runtime_info(state["segments"], state.get("peak_gpu_gib")), "devices": group.world if group else 1,
            "compile": step_mode(params, run.width)}
    write_json(runtime / f"{run.id}.json", {"run": run.id, "sweep": params.sweep, **info,
                                             "train_tokens_per_s": _tokens_per_s(folder, result["steps"],
                                                                                 params.batch_size,
                                                                                 info["train_seconds"])})
    summary = {k: v for k, v in {**result, **info}.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    if logger:
        logger.experiment.summary.update(summary)
        logger.experiment.finish(exit_code=0 if result["status"] == "finished" else 1)
    write_json(out / "train.json", record)  # the run is finished from here on
    _tidy(out)
    return {**record, "train_seconds": info["train_seconds"]}


def _tokens_per_s(folder: Path, steps: int, batch_size: int, seconds: float) -> float:
    import numpy as np

    mean_len = float(np.load(folder / "train_lengths.npy", mmap_mode="r").mean())
    return steps * batch_size * mean_len / seconds if seconds > 0 else 0.0


def check_fits(params: TrainParams, lengths: dict[str, int], vocab: dict[str, int], where: Path) -> None:
    """Every width fits the training device's memory, before anything is allocated: a width that
    cannot is a parameter error that names its field."""
    from ..execution.capacity import device_gib, memory_gib

    name, available = device_gib()
    for i, width in enumerate(params.widths):
        need = max(memory_gib(params.batch_size, lengths[d], width, params.layers, vocab[d]) for d in lengths)
        if need > available:
            raise ParamError(f"{where}: train.widths[{i}]: width {width} needs about {need:,.0f} GiB to train, more "
                             f"than the {available:,.0f} GiB of {name}")


def shard_of(runs: list[Run], shard: tuple[int, int] | None, only: list[str] | None = None) -> list[Run]:
    """Shard (i, n) of a sweep: every n-th run from the i-th (0-based), so that n job-array tasks
    each train their own runs; None: all of them. `only`: those of these run ids, in their order (a GPU
    shard's queue: its carried runs first)."""
    runs = runs if shard is None else runs[shard[0] :: shard[1]]
    if only is None:
        return runs
    ours = {r.id: r for r in runs}
    return [ours[i] for i in dict.fromkeys(only) if i in ours]


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' (0 <= I < N): the argument of `train --shard`."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ParamError(f"train --shard: expected I/N such as 0/8, got {text!r}") from None
    if not 0 <= i < n:
        raise ParamError(f"train --shard: I must be at least 0 and less than N, got {text!r}")
    return i, n


def run(params_path: Path = PARAMS, data: Path = DATA, runs: Path = RUNS,
        runtime: Path = RUNTIME_TRAIN, shard: tuple[int, int] | None = None, only: list[str] | None = None) -> None:
    """`shard` (i, n): train only that share of the sweep (one task of a job array); `only`: only
    these run ids of it (a GPU shard of the paper's grid). Either leaves runs/sweep.json alone: the
    sweep is recorded by a `dvc repro` once every shard has finished."""
    params = load_section(params_path, "train")  # every bad value fails here, before any training
    check_tracking()
    interruptible()  # SIGTERM as SIGINT: every run in flight stops at its next step, resumable
    try:
        check_attention(params)
    except ParamError as err:
        raise ParamError(f"{params_path}: {err}") from None
    lengths, vocab = {}, {}
    todo = shard_of(params.runs, shard, only)
    needed = list(dict.fromkeys(r.dataset for r in todo)) if only is not None else params.datasets
    for name in needed:  # every dataset complete and unchanged, before anything is written
        if not (data / name).exists():
            raise DataError(f"{params_path}: train.datasets: dataset {name!r} not found in {data} "
                            "(is it in generate.tasks?)")
        load(data / name / "meta.json", Meta)  # its fields, before anything reads them
        meta = verify(data / name)
        lengths[name], vocab[name] = meta["max_len"], len(meta["vocab"])
        if meta["splits"]["train"]["count"] < params.batch_size:
            raise ParamError(f"{params_path}: train.batch_size: {params.batch_size} is larger than the training "
                             f"split of {name} ({meta['splits']['train']['count']} samples)")
    check_fits(params, lengths, vocab, params_path)
    if not todo:
        say(f"train: shard {shard[0]}/{shard[1]} has no runs (the sweep has {len(params.runs)})")
        return
    if params.devices > 1 and not distributed():  # DDP: this stage again, as one process per device
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() < params.devices:
            raise ParamError(f"{params_path}: train.devices: {params.devices}, but this machine has "
                             f"{torch.cuda.device_count()} GPU(s)")
        code = launch(params.devices, params_path, data, runs, runtime, shard, only)
        if code:
            raise RunError(f"train: the training over {params.devices} devices (torchrun) failed with exit "
                           f"code {code}; its processes' output is above")
        return
    group = Group() if distributed() else None
    if group is not None:
        die_with_parent(os.getppid())  # a process of torchrun's ends with it, however torchrun ends
    if group is None or group.rank == 0:
        check_writable(runs)
        check_writable(runtime)
        if shard is None and only is None:  # shards may share runs/: one's temporaries are not litter
            remove_temporaries(runs)  # what a killed earlier attempt was writing
            remove_temporaries(runtime)
    quiet()
    import torch

    gpus = gpu_count()
    if group is not None:
        workers = 1
    elif params.concurrency:
        workers = params.concurrency
    elif gpus:  # as many at once as fit on each GPU, on every GPU of the host
        largest = max(peak_gib(params.batch_size, lengths[r.dataset], r.width, params.layers) for r in todo)
        per_gpu = gpu_workers(len(todo), largest, torch.cuda.get_device_properties(0).total_memory / 2**30)
        workers = min(len(todo), per_gpu * gpus)
    else:
        workers = 1
    if workers > 1:  # a pool's processes take seconds each to start: only for runs that train
        workers = min(workers, _to_train(todo, params, data, runs))
    where = [f"[{i}/{len(todo)}] " for i in range(1, len(todo) + 1)]
    rank = group.rank if group else 0  # rank 0 reports and records the sweep
    failures = {} if only is not None else None  # a GPU shard: one run's error must not cost the others
    if workers <= 1:
        results = run_each(train_run, [(r, params, data, runs, runtime, p, group) for r, p in zip(todo, where)],
                           lambda job: job[0].id, lambda job, result: _report(job[5], result, rank), failures)
    else:  # several processes share the GPUs (each pinned to one); each trains its runs one after the other
        with stage_pool(workers, gpus) as pool:
            results = run_all(pool, train_run, [(r, params, data, runs, runtime, p) for r, p in zip(todo, where)],
                              lambda job: job[0].id, lambda job, result: _report(job[5], result), failures)
    if group is not None:
        group.close()
        if rank:
            return
    if only is not None:
        say(f"train: {len(todo)} runs of the sweep's {len(params.runs)}")
    elif shard is None:
        write_json(runs / SWEEP, {"sweep": params.sweep, "runs": [r.id for r in todo]})
        wanted = {f"{r.id}.json" for r in todo}
        for stale in runtime.glob("*.json"):  # records of runs that left the sweep (their runs stay in runs/)
            if stale.name not in wanted:
                stale.unlink()
    else:
        say(f"train: shard {shard[0]}/{shard[1]}: {len(todo)} of the sweep's {len(params.runs)} runs; once "
            "every shard has finished, `dvc repro` records the sweep (and trains what none did)")
    failed = [r for r in results if r["status"] != "finished"]
    if failed:
        say(f"train: {len(failed)} of {len(results)} runs diverged (shown as failed in the report)")
    if failures:
        raise Failed("train", failures, len(todo))


def _report(position: str, result: dict, rank: int = 0) -> dict:
    if rank:
        return result
    acc = result["best_val_acc"]
    how = ("reused" if result.get("reused") else
           f"{result['steps']} steps in {result['train_seconds']:.1f}s")
    status = "" if result["status"] == "finished" else f", {result['status'].upper()}: {result['reason']}"
    say(f"train {position}{result['run']['dataset']}-{result['run']['attention']}-w{result['run']['width']}"
        f"-s{result['run']['seed']}: {how}, best val acc {acc if acc is None else round(acc, 4)}{status}")
    return result


def main(argv: list[str] | None = None) -> int:
    top = cli.parser("python -m pipeline.stages.train",
                     "DVC stage: every run of the sweep (params.yaml's train section)")
    cli.params_option(top)
    # where the stage reads and writes (a DDP training's processes get them)
    top.add_argument("--data", type=Path, default=DATA, help="datasets (default: %(default)s)")
    top.add_argument("--runs", type=Path, default=RUNS, help="trained runs (default: %(default)s)")
    top.add_argument("--runtime", type=Path, default=RUNTIME_TRAIN, help="run-dependent records (default: %(default)s)")
    top.add_argument("--shard", help="I/N: train only every N-th run of the sweep from the I-th (a job array's task I "
                                     "of N); `dvc repro` records the sweep afterwards")
    top.add_argument("--only", help="comma-separated run ids of the sweep: train only these (a GPU shard of the "
                                    "paper's grid); runs/sweep.json is left alone")
    return cli.command(top, lambda a: run(a.params, a.data, a.runs, a.runtime,
                                          parse_shard(a.shard) if a.shard else None,
                                          a.only.split(",") if a.only is not None else None), argv)


if __name__ == "__main__":
    sys.exit(main())
