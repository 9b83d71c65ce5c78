"""The `evaluate` stage: every run of the current sweep (runs/sweep.json) on its test split.

Writes, per run, results/<run>.json (what the run achieved and costs: determined by its inputs) and
runtime/evaluate/<run>.json (seconds, device, revision), plus metrics.json, the few numbers that
`dvc metrics show` and `dvc exp show` compare.

A run is evaluated again only when its evaluation key changes: its weights (checksum), the
evaluation settings, or the code that evaluates (the import closure of `pipeline.evaluation`).
Parameters and FLOPs per sequence are derived here every time from the run's configuration and the
cost model, so a cost-model change refreshes them without evaluating or training anything.
A run that diverged in training is recorded as failed, with its reason, and not evaluated.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

from ..data import DataError, verify
from ..deps import code_hash
from ..execution import cli
from ..execution.capacity import RUNS_PER_GPU
from ..execution.io import check_writable, remove_temporaries, say, write_json
from ..execution.runtime import (
    Failed,
    Interrupted,
    device,
    gpu_count,
    interruptible,
    lightning_stops,
    quiet,
    run_all,
    run_each,
    stage_pool,
    stopping,
    versions,
)
from ..execution.tracking import check_tracking, wandb_logger
from ..layout import DATA, METRICS, PARAMS, RESULTS, RUNS, RUNTIME_EVALUATE, SWEEP, check_weights
from ..params import EvaluateParams, Run, load_section
from ..records import Meta, Results, Sweep, TrainRecord, load

RESULTS_VERSION = 4  # bump when the fields of a results file change


def derived(checkpoint: Path) -> dict:
    """Numbers that follow from a run's configuration alone: parameters and FLOPs per sequence."""
    import torch

    from ..attention import describe
    from ..cost import flops_per_sequence

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    model = ckpt["hyper_parameters"]["model"]
    flops = flops_per_sequence(model["max_len"], model["width"], model["layers"], model["heads"],
                               model["vocab_size"], model["attention"], **model["attention_options"])
    params = sum(v.numel() for k, v in ckpt["state_dict"].items() if k.startswith("model."))
    return {"params": params, "flops_per_sequence": flops["total"], "flops_by_part": flops,
            **describe(model["attention"])}


def evaluation_key(train: dict, params: EvaluateParams, code: str | None = None) -> str:
    """What a result must match to be reused: the weights, the grading settings and the code that
    evaluates (`code`: its hash, where the caller has it already)."""
    blob = json.dumps({"weights": train["checkpoint_sha256"], "evaluate": params.grading(),
                       "code": code or code_hash("pipeline.evaluation"), "version": RESULTS_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _to_grade(trains: dict[str, dict], params: EvaluateParams, results: Path) -> int:
    """How many runs need grading (finished, and no result matches their key): what decides if the
    stage needs its process pool."""
    code, count = code_hash("pipeline.evaluation"), 0  # hashed once: parsing the code takes ~70 ms a time
    for run_id, train in trains.items():
        try:
            old = load(results / f"{run_id}.json", Results)
            done = train["status"] != "finished" or (old is not None and old.get("evaluation_key") ==
                                                     evaluation_key(train, params, code))
        except Exception:  # a bad result is the run's to report, as it is graded again
            done = False
        count += not done
    return count


def evaluate_run(run_id: str, train: dict, params: EvaluateParams, data: Path, meta: dict, runs: Path,
                 results: Path, runtime: Path, position: str = "") -> dict:
    """`meta`: the run's dataset's meta.json, already checked against its files."""
    if stopping():  # asked to stop while this run waited: it is not evaluated now
        raise Interrupted(f"evaluate: run {run_id} not evaluated")
    run = Run(**train["run"])
    ckpt = check_weights(runs / run_id, train)
    key = evaluation_key(train, params)
    out = results / f"{run_id}.json"
    old = load(out, Results)
    identity = {"run": run.id, "task": train["task"], "n": train["n"], "attention": run.attention,
                "width": run.width, "seed": run.seed, "seq_len": train["max_len"]}
    training = {k: train[k] for k in ("status", "reason", "steps", "best_step", "best_val_acc", "stopped_early")}
    training["curve"] = train.get("curve")  # None for a run trained before runs kept their curve
    if old is not None and old.get("evaluation_key") == key:
        scores, reused = {k: old[k] for k in SCORES}, True
    elif train["status"] != "finished":  # diverged: nothing to grade, shown as failed
        scores, reused = dict.fromkeys(SCORES), False
    else:
        from ..evaluation import evaluate
        from ..execution.callbacks import Progress

        start = time.perf_counter()
        logger = wandb_logger(run, train["sweep"], meta, "evaluate",
                              {"run": train["run"], "evaluate": params.grading(), "evaluation_key": key})
        wandb_run = logger and logger.experiment  # W&B starts its run here, so that test_seconds leaves that out
        graded = time.perf_counter()
        with lightning_stops(f"evaluate: run {run_id} stopped before its result"):
            scores = evaluate(ckpt, data / run.dataset, meta, params.batch_size, params.generation_samples,
                              run.seed, logger, [Progress(f"evaluate {position}{run_id}")])
        timing = {"generation_seconds": scores.pop("generation_seconds"),
                  "test_seconds": round(time.perf_counter() - graded, 3)}
        if wandb_run:
            wandb_run.summary.update({k: v for k, v in scores.items() if not isinstance(v, dict)})
            wandb_run.finish()
        reused = False
        write_json(runtime / f"{run_id}.json", {"run": run_id, "eval_seconds": round(time.perf_counter() - start, 3),
                                                **timing,
                                                "device": device(), "versions": versions()})
    result = {"evaluation_key": key, **identity, **training, **scores, **derived(ckpt),
              "status": "finished" if train["status"] == "finished" else "failed"}
    write_json(out, result)
    return {**result, "reused": reused, "position": position}


SCORES = ("exact_match", "answer_acc", "token_acc", "answer_samples", "graded_acc", "exact_by_length",
          "wrong_by_position")


def _report(r: dict) -> dict:
    how = "reused" if r["reused"] else "evaluated"
    text = (f"graded accuracy {r['graded_acc']:.4f} (exact match {r['exact_match']:.4f}, "
            f"answer {r['answer_acc']:.4f})" if r["status"] == "finished" else f"FAILED: {r['reason']}")
    say(f"evaluate {r['position']}{r['run']}: {how}, {text}")
    return r


def summary(records: list[dict]) -> dict:
    """The few numbers DVC compares across experiments: mean graded accuracy by attention type and
    how many runs there are and failed (every run's numbers: `dvc metrics show results/*.json`)."""
    def mean(rs):
        values = [r["graded_acc"] for r in rs if r["graded_acc"] is not None]
        return round(statistics.fmean(values), 6) if values else None

    attentions = sorted({r["attention"] for r in records}, key=lambda a: next(
        r["attention_order"] for r in records if r["attention"] == a))
    return {"runs_total": len(records), "runs_failed": sum(r["status"] != "finished" for r in records),
            "graded_acc": {a: mean([r for r in records if r["attention"] == a]) for a in attentions}}


def run(params_path: Path = PARAMS, data: Path = DATA, runs: Path = RUNS, results: Path = RESULTS,
        runtime: Path = RUNTIME_EVALUATE, summary_path: Path = METRICS, only: list[str] | None = None,
        sweep_name: str = "") -> list[dict]:
    """Evaluate the current sweep (runs/sweep.json), or `only` these trained runs (a GPU shard of the
    paper's grid: then no other result is touched and metrics.json is not written)."""
    params = load_section(params_path, "evaluate")
    check_tracking()
    interruptible()  # SIGTERM as SIGINT: the stage stops promptly; evaluated runs are kept
    sweep = {"sweep": sweep_name, "runs": list(only)} if only is not None else load(runs / SWEEP, Sweep)
    if sweep is None:
        raise FileNotFoundError(f"no trained runs in {runs} ({runs / SWEEP} is missing): run the train stage first")
    trains = {}
    for run_id in sweep["runs"]:
        train = load(runs / run_id / "train.json", TrainRecord)
        if train is None:
            raise DataError(f"{runs / run_id / 'train.json'}: missing, though {runs / SWEEP} lists the run "
                            "(run the train stage)")
        trains[run_id] = {**train, "sweep": sweep["sweep"]}
    datasets = sorted({t["run"]["dataset"] for t in trains.values()})
    for dataset in datasets:  # its fields, before anything reads them
        load(data / dataset / "meta.json", Meta)
    metas = {dataset: verify(data / dataset) for dataset in datasets}
    check_writable(results)
    check_writable(runtime)
    remove_temporaries(results)  # what a killed earlier attempt was writing
    remove_temporaries(runtime)
    quiet()
    n = len(trains)
    where = [f"[{i}/{n}] " for i in range(1, n + 1)]
    jobs = [(run_id, train, params, data, metas[train["run"]["dataset"]], runs, results, runtime, w)
            for (run_id, train), w in zip(trains.items(), where)]
    gpus = gpu_count()
    workers = params.concurrency or (min(RUNS_PER_GPU * gpus, n) if gpus else 1)
    if workers > 1:  # a pool's processes take seconds each to start: only for runs to grade
        workers = min(workers, _to_grade(trains, params, results))
    failures = {} if only is not None else None  # a GPU shard: one run's error must not cost the others
    if workers <= 1:
        records = run_each(evaluate_run, jobs, lambda job: job[0], lambda job, result: _report(result), failures)
    else:  # several processes share the GPUs: small models' generation is bound by kernel launches
        with stage_pool(workers, gpus) as pool:  # every GPU of the host, each process on one
            records = run_all(pool, evaluate_run, jobs, lambda job: job[0], lambda job, result: _report(result),
                              failures)
    if failures:
        raise Failed("evaluate", failures, n)
    if only is not None:
        return records
    wanted = {f"{run_id}.json" for run_id in trains}
    for folder in (results, runtime):  # results of runs that left the sweep (their runs stay in runs/)
        for stale in folder.glob("*.json"):
            if stale.name not in wanted:
                stale.unlink()
    write_json(summary_path, summary(records))
    return records


def main(argv: list[str] | None = None) -> int:
    top = cli.parser("python -m pipeline.stages.evaluate",
                     "DVC stage: every run of the sweep on its test split (params.yaml's evaluate section)")
    cli.params_option(top)
    return cli.command(top, lambda a: run(a.params), argv)


if __name__ == "__main__":
    sys.exit(main())
