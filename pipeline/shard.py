"""One GPU session's share of the paper's grid: `python -m pipeline shard --profile paper --seconds S
--out DIR` chooses the next cells that are missing (the width search's frontier: per task, size and
attention type, the narrowest width not landed, once every narrower one has landed without passing),
keeps those whose predicted training fits the seconds given, so that no run is cut off (and stops the
training at a deadline all the same, should a prediction be wrong), generates their
datasets, trains and evaluates them here, and writes one shard file to DIR with every cell's results,
curve, cost and provenance. Back home, `python -m pipeline land DIR/shard-*.json` puts them into
reports/paper/cells.json, where `grid-status` and the paper's report read them.

Why a command of its own and not `dvc repro`: a GPU machine lent for minutes is bare, reaches no DVC
remote and returns a few small files; the checkpoints stay there, the results come back.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

from .execution.capacity import LAUNCH_BOUND_WIDTH, RUNS_PER_GPU, SHARED_GAIN
from .execution.io import say
from .execution.runtime import Interrupted, carry_on, gpu_count, interruptible
from .grid import FIGURES, cell_status, landed, task_of
from .layout import DATA, PAPER_CELLS, RESULTS, RUNS, RUNTIME_EVALUATE, RUNTIME_TRAIN
from .params import Run, load_section
from .provenance import git_rev
from .records import EvaluateRuntime, Results, TrainRuntime, load

SAFETY = 0.8  # of the seconds given, what the chosen runs' predicted training may take together
# Training stops this many seconds before the seconds given end, whatever the predictions said: the
# runs it cuts off are named in the shard file and not landed, and the finished ones are evaluated
# (about 5 s a run on a GPU) and written in the time left.
STOP_MARGIN = 90.0


def frontier(params_path: Path, figure: str | None, every_width: bool, folder: Path = PAPER_CELLS) -> list[Run]:
    """The missing cells to train next, in the figures' order; `every_width`: every missing cell,
    not only the search's next width of each task, size and attention type."""
    train = load_section(params_path, "train")
    records = landed(folder)
    figures = [figure] if figure else list(FIGURES)
    chosen: dict[str, Run] = {}
    for fig in figures:
        tasks, attentions = FIGURES[fig]
        for run in train.runs:
            if task_of(run.dataset) not in tasks or run.attention not in attentions or run.id in chosen:
                continue
            if cell_status(run, train.widths, records) != "missing":
                continue
            narrower = [Run(run.dataset, run.attention, w, run.seed) for w in train.widths if w < run.width]
            if every_width or all(n.id in records for n in narrower):
                chosen[run.id] = run
    return list(chosen.values())


def wall(chosen: list[Run], prices: dict[str, float], slots: int, gpus: int = 1) -> float:
    """Predicted seconds to train `chosen`: on one slot, one after another; on several, all at once,
    spread over `gpus`, the k on one GPU each taking max(1, k / gain) x its price alone (`SHARED_GAIN`
    where every run is launch-bound, else 1: no gain)."""
    if slots <= 1:
        return sum(prices[r.id] for r in chosen)
    gain = SHARED_GAIN if all(r.width <= LAUNCH_BOUND_WIDTH for r in chosen) else 1.0
    per_gpu = -(-len(chosen) // max(gpus, 1))
    return max(prices[r.id] for r in chosen) * max(1.0, per_gpu / gain)


def fitting(runs: list[Run], prices: dict[str, float], seconds: float, slots: int = 1, gpus: int = 1) -> list[Run]:
    """The runs, cheapest first, whose predicted training (`wall`) takes no more than SAFETY x
    `seconds`; on several slots, no more runs than slots, so that all train at once."""
    out: list[Run] = []
    for run in sorted(runs, key=lambda r: prices[r.id]):
        trial = out + [run]
        if (slots <= 1 or len(trial) <= slots) and wall(trial, prices, slots, gpus) <= SAFETY * seconds:
            out = trial
    return out


def slots_of(concurrency: int, gpus: int) -> int:
    """Runs the train stage trains at once here: its `concurrency`, else (auto) RUNS_PER_GPU on each
    GPU (memory permitting: a run that does not fit waits, which the wide runs' gain of 1 prices) and
    one on a CPU."""
    return concurrency or (RUNS_PER_GPU * gpus if gpus else 1)


def run(params_path: Path, seconds: float, out: Path, figure: str | None = None, every_width: bool = False,
        command: str = "python -m pipeline shard", cells: list[str] | None = None) -> Path | None:
    """`cells`: exactly these run ids of the profile, whatever their status (an implied cell trained
    to check the search, or a landed one trained again to see the spread), as far as they fit."""
    from . import hours
    from .generation import tasks_of, write_dataset
    from .stages import evaluate as evaluate_stage
    from .stages import train as train_stage

    began = time.time()
    prices = hours.prices(params_path)
    train = load_section(params_path, "train")
    if cells:
        known = {r.id: r for r in train.runs}
        unknown = [c for c in cells if c not in known]
        if unknown:
            raise ValueError(f"shard --cells: {unknown[0]!r} is not a run of {params_path}")
        candidates = [known[c] for c in cells]
    else:
        candidates = frontier(params_path, figure, every_width)
    gpus = gpu_count()
    slots = slots_of(train.concurrency, gpus)
    todo = fitting(candidates, prices, seconds, slots, gpus)
    if not todo:
        say("shard: no missing cell fits the seconds given")
        return None
    ids = [r.id for r in todo]
    minutes = wall(todo, prices, slots, gpus) / 60
    say(f"shard: {len(todo)} cells, {min(slots, len(todo))} at once, predicted {minutes:.1f} min of training at most: "
        + ", ".join(ids))
    generate = load_section(params_path, "generate")
    needed = {r.dataset for r in todo}
    for dataset, task in tasks_of(generate, str(params_path)):
        if dataset.name in needed and not (DATA / dataset.name / "meta.json").exists():
            write_dataset(task, generate.sizes, generate.seed, DATA / dataset.name)
    finished = train_until(params_path, ids, began + seconds - STOP_MARGIN, train_stage.run)
    cut = [i for i in ids if i not in finished]
    if finished:
        evaluate_stage.run(params_path, only=finished, sweep_name=train.sweep)
    revision = git_rev()
    records = []
    for run_id in finished:
        result = load(RESULTS / f"{run_id}.json", Results)
        trained = load(RUNTIME_TRAIN / f"{run_id}.json", TrainRuntime)
        evaluated = load(RUNTIME_EVALUATE / f"{run_id}.json", EvaluateRuntime) or {"eval_seconds": 0.0}
        records.append({**result, "train_seconds": trained["train_seconds"], "eval_seconds": evaluated["eval_seconds"],
                        "peak_gpu_gib": trained["peak_gpu_gib"], "device": trained["device"],
                        "git_rev": trained["git_rev"] or revision, "versions": trained["versions"],
                        "command": command})
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"shard-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(began))}.json"
    path.write_text(json.dumps({"runs": records, "cut_off": cut, "params": str(params_path),
                                "seconds": round(time.time() - began, 1), "runs_dir": str(RUNS)}, indent=1) + "\n")
    say(f"shard: {len(records)} cells in {time.time() - began:.0f}s -> {path} (land it with python -m pipeline "
        f"land {path.name})")
    return path


def train_until(params_path: Path, ids: list[str], deadline: float, train) -> list[str]:
    """`train(params_path, only=ids)`, stopped at `deadline` (time.time()) if still training then, as a
    SIGTERM would stop it; returns the ids whose training finished. A stop that is not the deadline's
    (Ctrl-C, a SIGTERM from outside) still stops the shard."""
    reached, done = threading.Event(), threading.Event()

    def stop() -> None:
        if not done.is_set():
            reached.set()
            os.kill(os.getpid(), signal.SIGTERM)

    interruptible()  # before the timer can fire: its SIGTERM must never find the default handler
    timer = threading.Timer(max(deadline - time.time(), 0.0), stop)
    timer.daemon = True
    timer.start()
    try:
        train(params_path, only=ids)
        done.set()
    except Interrupted as err:
        if not reached.is_set():
            raise
        carry_on()
        say(f"shard: training stopped at the deadline ({err})")
    finally:
        timer.cancel()
    return [i for i in ids if (RUNS / i / "train.json").exists()]
