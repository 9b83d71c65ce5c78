"""One GPU session's share of the paper's grid: `python -m pipeline shard --profile paper --seconds S
--out DIR` chooses the next cells that are missing (the width search's frontier: per task, size and
attention type, the narrowest width not landed, once every narrower one has landed without passing),
keeps those whose predicted training fits the seconds given, so that no run is cut off (and stops the
training at a deadline all the same, should a prediction be wrong), generates their
datasets, trains and evaluates them here, and writes one shard file to DIR with every cell's results,
curve, cost and provenance. The chosen cells are a queue: as many train at once as the GPU runs
(`--concurrency`), and each slot takes the next cell as its run finishes. When the queue is done and
time is left, the search moves on (a width that failed here makes way for the next) and the shard
chooses again. Back home, `python -m pipeline land DIR/shard-*.json` puts them into
reports/paper/cells.json, where `grid-status` and the paper's report read them.

Runs cut off at the deadline are carried, not lost: their last checkpoints go into an archive beside
the shard file, in parts of at most 15 MB (as far as `--carry-mb` allows; by default CARRY_BYTES, what one
command of a lent machine returns: five runs of width 128, or one of 256 and a few narrower), and the
next shard, on another bare machine, resumes them from it: `land` keeps it in reports/paper/carry/,
where a shard of the frontier finds it (`--resume-from` names another; `carry.py`). `--fill` uses this on
purpose: it queues every cell of the frontier whether or not it can finish, as far as the archive could
carry the runs in flight at the deadline; a cell too large to carry alone (w512 and up by default) goes
first only if it is predicted to finish, and is otherwise named as left out (`plan.py` chooses).

Each run is evaluated as soon as it finishes (`AsFinished`) and the shard file written again, marked
partial; every CARRY_EVERY seconds the runs in flight are packed into the carry archive too
(`Snapshots`). A copy taken while the shard runs lands what had finished and resumes what had not,
should the machine be taken back before the shard ends.

Why a command of its own and not `dvc repro`: a GPU machine lent for minutes is bare, reaches no DVC
remote and returns a few small files; the checkpoints stay there, the results come back.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from functools import cache
from pathlib import Path

from .carry import CARRY_BYTES, carry_sizes, pack, unpack
from .execution.io import say, write_json
from .execution.runtime import Failed, Interrupted, carry_on, device, gpu_count, interruptible, one_line
from .grid import carry_of, first_records, in_progress, landed_file
from .layout import DATA, PAPER_CELLS, RESULTS, RUNS, RUNTIME_EVALUATE, RUNTIME_TRAIN
from .params import load_section
from .plan import ahead, filled, fitting, frontier, passed_over, queue, slots_of, wall
from .provenance import git_rev
from .records import CorruptFile, EvaluateRuntime, Results, TrainRuntime, load

# Training stops this many seconds before the seconds given end, whatever the predictions said: the
# runs it cuts off are named in the shard file and not landed, and the finished ones are evaluated
# (about 5 s a run on a GPU) and written in the time left.
STOP_MARGIN = 90.0
POLL = 15.0  # seconds between looks for runs that finished, to evaluate them at once (`AsFinished`)
# seconds between carry archives of the runs in flight (`Snapshots`): what a machine taken back mid-shard
# loses at most, beside the time since the last copy came back (about 10 s of packing on a GPU host)
CARRY_EVERY = 240.0
EVAL_GRACE = 60.0  # seconds an evaluation in progress at a round's end may take to finish


def run(params_path: Path, seconds: float, out: Path, figure: str | None = None, every_width: bool = False,
        command: str = "python -m pipeline shard", cells: list[str] | None = None, fill: bool = False,
        resume_from: Path | None = None, carry_bytes: int = CARRY_BYTES,
        bench: list[Path] | None = None, speedup: float = 1.0) -> Path | None:
    """`cells`: these run ids of the profile, whatever their status (an implied cell trained to check
    the search, or a landed one trained again to see the spread), as far as they fit, instead of the
    search's frontier. `resume_from`: a carry archive of an earlier shard, whose runs go on first;
    `fill`: every cell queued, whether or not it can finish (those cut off are carried), and the
    frontier after the `cells`; a cell the archive cannot carry (named, or of the frontier and too large
    alone) goes first if it is predicted to finish, and is otherwise said and left out. `carry_bytes`:
    the most the carry archive holds. `bench`: the throughput files that price the runs (`hours.prices`);
    `speedup`: what divides each price (a training over several GPUs: `ddp_speedup`)."""
    from . import hours
    from .execution.tracking import check_tracking
    from .stages import evaluate as evaluate_stage
    from .stages import train as train_stage

    check_tracking()
    began = time.time()
    deadline = began + seconds - STOP_MARGIN
    stamp = time.strftime('%Y%m%d-%H%M%S', time.gmtime(began))
    path = out / f"shard-{stamp}.json"  # written part-way as runs finish, and whole at the end
    prices = {run_id: alone / speedup for run_id, alone in hours.prices(params_path, bench).items()}
    train = load_section(params_path, "train")
    known = {r.id: r for r in train.runs}
    if cells:
        unknown = [c for c in cells if c not in known]
        if unknown:
            raise ValueError(f"shard --cells: {unknown[0]!r} is not a run of {params_path}")
    if not cells and not PAPER_CELLS.exists():  # a copy of the tree without reports/: say so, not silently
        say(f"shard: {PAPER_CELLS} not found: no cell counts as landed, so the search starts at the narrowest widths")
    going = None  # the runs to resume from the landed archive: those not landed since
    if resume_from is None and (fill or not cells):
        resume_from, going = resumable() or (None, None)
    entries = unpack(resume_from, known, RUNS, going) if resume_from else {}
    carried = {run_id: entry["steps"] for run_id, entry in entries.items()}
    history = {run_id: entry["segments"] for run_id, entry in entries.items()}
    for run_id, steps in carried.items():  # a carried run costs what it has left
        prices[run_id] *= max(0.0, 1 - steps / train.max_steps)
    gpus = gpu_count()
    slots = slots_of(train.concurrency, gpus)
    revision = git_rev()
    here_device = cache(device)  # the GPU's name, asked once, when a run's segment is first packed

    def segments(run_id: str, steps: int) -> list[dict]:
        """A run's shards so far, this one's last if it trained here: the steps done at the end of each."""
        before = history.get(run_id, [])
        if before and before[-1]["steps"] >= steps:
            return before
        return [*before, {"steps": steps, "git_rev": revision, "device": here_device(),
                          "compile": train_stage.step_mode(train, known[run_id].width)}]

    def landing(run_id: str) -> dict:
        return landing_record(run_id, revision, command, history.get(run_id))

    records: list[dict] = []
    queued: list[str] = []  # every run queued here, in every round
    cut: list[str] = []  # queued here and not finished: cut off at the deadline, not started, or crashed
    crashed: dict[str, str] = {}  # run id -> why its training or evaluation failed (not a divergence)
    skipped: list[str] = []  # cells that could neither be carried nor finish: said once

    carry = out / f"carry-{stamp}.tar.gz"
    written = {"runs": [], "carried": {}, "carry_parts": 0}  # the partial file's latest runs and carry
    lock = threading.Lock()  # the partial file is written by the watcher threads and this one

    def shard_file(runs: list[dict], kept: dict[str, int], parts: int, **more) -> None:
        """The shard file: the runs with landable results, the runs carried in `carry` and its parts."""
        write_shard(path, {"runs": runs, "crashed": dict(crashed), "carried": kept,
                           "carry": carry.name if kept else None, "carry_parts": parts, "params": str(params_path),
                           "gpus": gpus,  # the GPUs of the host, all the shard's: its GPU-hours are seconds x gpus
                           "seconds": round(time.time() - began, 1), "runs_dir": str(RUNS), **more})

    def partial(runs: list[dict] | None = None, carried_now: tuple[dict, int] | None = None) -> None:
        """The shard file part-way: what has landable results so far, and the latest carry archive."""
        with lock:
            if runs is not None:
                written["runs"] = runs
            if carried_now is not None:
                written["carried"], written["carry_parts"] = carried_now
            shard_file(written["runs"], written["carried"], written["carry_parts"], partial=True)

    def snapshot() -> None:  # the runs queued or carried in and not finished, as they stand
        ids = list(dict.fromkeys([*carried, *queued]))
        done = trained(ids)
        partial(carried_now=pack([i for i in ids if i not in done], RUNS, carry, revision, carry_bytes, quiet=True,
                                 segments=segments))

    snapshots = Snapshots(snapshot)
    try:
        while time.time() < deadline:  # a round: choose, train, evaluate; then the search moves on
            search = frontier(params_path, figure, every_width, here={r["run"]: r for r in records}) \
                if fill or not cells else []
            candidates = queue([known[i] for i in carried], [known[c] for c in cells or []], search, queued)
            left = deadline + STOP_MARGIN - time.time()
            sizes = carry_sizes(params_path, train, candidates) if fill else {}
            todo = filled(candidates, sizes, slots, carry_bytes) if fill else []
            if todo:  # a cell the archive cannot carry trains first if it will finish, else it is said
                passed = passed_over(candidates, todo, cells or [], sizes, carry_bytes)
                todo = ahead(passed, todo, prices, left, slots, gpus) + todo
                for run in [r for r in passed if r not in todo and r.id not in skipped]:
                    skipped.append(run.id)
                    say(f"shard: {'--cells ' * (run.id in (cells or []))}{run.id} not trained: too large to carry "
                        f"({sizes[run.id] / 2**20:.0f} MB), and not predicted to finish in the seconds left "
                        f"({prices[run.id] / 60:.1f} min alone); a shard of its own, without --fill, or a "
                        "longer-lived machine can train it")
            todo = todo or fitting(candidates, prices, left, slots, gpus)
            if not todo:
                break
            ids = [r.id for r in todo]
            queued += ids
            say(f"shard: {len(todo)} cells{' more' if records else ''}, {min(slots, len(todo))} at once, predicted "
                f"{wall(todo, prices, slots, gpus) / 60:.1f} min of training at most: " + ", ".join(ids))
            prepare(params_path, {r.dataset for r in todo})
            early = AsFinished(params_path, ids, train.sweep, lambda done, before=list(records): partial(
                before + [landing(i) for i in done]))
            try:
                finished, failures = train_until(params_path, ids, deadline, train_stage.run)
            finally:
                early.stop()
            crashed.update(failures)
            cut += [i for i in ids if i not in finished]
            pending = [i for i in finished if i not in early.evaluated]  # the others were evaluated as they finished
            if pending:
                try:
                    evaluate_stage.run(params_path, only=pending, sweep_name=train.sweep)
                except Failed as err:  # the others were evaluated
                    crashed.update(err.failures)
            records += [landing(i) for i in finished if i not in crashed]
            if records:
                partial(records)
    finally:
        snapshots.stop()  # before the last archive: the two write the same files
    if not queued:
        say("shard: no missing cell fits the seconds given")
        return None
    waiting = [i for i in carried if i not in queued]  # carried in, not trained here: carried on
    out.mkdir(parents=True, exist_ok=True)
    kept, parts = pack(cut + waiting, RUNS, carry, revision, carry_bytes, segments=segments)
    shard_file(records, kept, parts, device=here_device(), cut_off=cut)
    more = f" and {parts - 1} more parts" if parts > 1 else ""
    say(f"shard: {len(records)} cells in {time.time() - began:.0f}s -> {path} (land it with python -m pipeline "
        f"land {path.name})" + (f"; {len(kept)} cut off carried in {carry.name}{more}, which land keeps for "
                                "the next shard to resume" if kept else "")
        + (f"; {len(crashed)} failed ({', '.join(crashed)}), why in the shard file's crashed" if crashed else ""))
    return path


def ddp_speedup(path: Path | None, devices: int) -> float:
    """The speed-up of one training over `devices` GPUs against one, as `python -m benchmarks scaleout
    --gpus N` measured it (ED n=12, the standard model at one width: the proxy for every run's price)."""
    if path is None:
        raise ValueError(f"shard --devices {devices}: --scaleout FILE is needed, the DDP speed-up that `python -m "
                         f"benchmarks scaleout --gpus {devices}` measured on this kind of host: it prices the runs")
    try:
        measured = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise CorruptFile(f"{path}: not a scaleout result ({one_line(err)})") from None
    gpus, speedup = (measured.get("gpus"), measured.get("ddp_speedup")) if isinstance(measured, dict) else (None, None)
    if gpus != devices:
        raise CorruptFile(f"{path}: gpus: measured over {gpus!r} GPUs, not the {devices} of --devices")
    if isinstance(speedup, bool) or not isinstance(speedup, int | float) or not speedup > 0:
        raise CorruptFile(f"{path}: ddp_speedup: not a positive number, got {speedup!r}")
    return float(speedup)


def resumable(folder: Path = PAPER_CELLS) -> tuple[Path, set[str]] | None:
    """The landed carry archive of the runs in progress (`grid.in_progress`), if it is there, and those
    runs: what a shard of the frontier resumes unless told otherwise, so that no lease starts them again."""
    records, shards = landed_file(folder)
    for archive, runs in in_progress(shards, first_records(records), carry_of(folder)).items():
        say(f"shard: {len(runs)} run{'s' * (len(runs) != 1)} in progress resumed from {carry_of(folder) / archive} "
            "(landed)")
        return carry_of(folder) / archive, set(runs)
    return None


def prepare(params_path: Path, datasets: set[str]) -> None:
    """The `datasets` generated here, those not generated yet."""
    from .generation import tasks_of, write_dataset

    generate = load_section(params_path, "generate")
    for dataset, task in tasks_of(generate, str(params_path)):
        if dataset.name in datasets and not (DATA / dataset.name / "meta.json").exists():
            write_dataset(task, generate.sizes, generate.seed, DATA / dataset.name)


def landing_record(run_id: str, revision: str, command: str, earlier: list[dict] | None = None) -> dict:
    """A finished and evaluated run's record as it lands: its results, cost and provenance. `earlier`:
    a carried run's segments in the shards before this one (`pack`), to which this one's is added, since
    device, revision and compile name the last segment's alone."""
    result = load(RESULTS / f"{run_id}.json", Results)
    trained = load(RUNTIME_TRAIN / f"{run_id}.json", TrainRuntime)
    evaluated = load(RUNTIME_EVALUATE / f"{run_id}.json", EvaluateRuntime) or {"eval_seconds": 0.0}
    record = {**result, "train_seconds": trained["train_seconds"], "eval_seconds": evaluated["eval_seconds"],
              "peak_gpu_gib": trained["peak_gpu_gib"], "device": trained["device"], "compile": trained.get("compile"),
              "git_rev": trained["git_rev"] or revision, "versions": trained["versions"], "command": command}
    if trained.get("devices", 1) > 1:  # trained over several GPUs (DDP)
        record["devices"] = trained["devices"]
    if earlier:
        record["segments"] = [*earlier, {"steps": result["steps"], "git_rev": record["git_rev"],
                                         "device": record["device"], "compile": record["compile"]}]
    return record


def train_until(params_path: Path, ids: list[str], deadline: float, train) -> tuple[list[str], dict[str, str]]:
    """`train(params_path, only=ids)`, stopped at `deadline` (time.time()) if still training then, as a
    SIGTERM would stop it; returns the ids whose training finished, and those whose training failed
    with an error (`Failed`: the others went on) -> why. A stop that is not the deadline's (Ctrl-C, a
    SIGTERM from outside) still stops the shard."""
    reached, done = threading.Event(), threading.Event()
    failures: dict[str, str] = {}

    def stop() -> None:
        if not done.is_set():
            reached.set()
            os.kill(os.getpid(), signal.SIGTERM)

    interruptible()  # before the timer can fire: its SIGTERM must never find the default handler
    timer = threading.Timer(max(deadline - time.time(), 0.0), stop)
    timer.daemon = True
    timer.start()
    try:
        try:
            train(params_path, only=ids)
        except Failed as err:
            failures = err.failures
        done.set()
    except Interrupted as err:
        if not reached.is_set():
            raise
        carry_on()
        say(f"shard: training stopped at the deadline ({err})")
    finally:
        timer.cancel()
    return trained(ids), failures


def trained(ids: list[str]) -> list[str]:
    """Those of `ids` whose training finished: the run's record is written last."""
    return [i for i in ids if (RUNS / i / "train.json").exists()]


def write_shard(path: Path, shard: dict) -> None:
    """The shard file, atomically: a copy taken while the shard runs is the last whole version."""
    if shard.get("partial") and "device" not in shard:  # the runs name it; no CUDA in this process
        shard["device"] = next((r["device"] for r in shard["runs"]), None)
    write_json(path, shard)


class Watcher:
    """A thread beside the shard's training that calls `tick()` every `every()` seconds (read each
    time: tests shorten it) until `stop()`; the main thread waits on the training meanwhile."""

    def __init__(self) -> None:
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()

    def every(self) -> float:
        raise NotImplementedError

    def tick(self) -> None:
        raise NotImplementedError

    def watch(self) -> None:
        while not self.halt.wait(self.every()):
            self.tick()

    def stop(self, grace: float | None = None) -> None:
        """No new tick starts; one in progress ends first (given `grace` seconds, if not None)."""
        self.halt.set()
        self.thread.join(grace)


class AsFinished(Watcher):
    """While a round trains, each run that finished is evaluated at once, in a process of its own
    (this one's main thread waits on the training; CUDA and signal handlers want a process's main
    thread), and `write(evaluated ids)` writes the shard file again, marked partial. Should the
    machine be taken back before the shard ends, the runs that finished come back with the last copy
    of that file, which lands like a whole one (and a whole one landed later replaces it)."""

    def __init__(self, params_path: Path, ids: list[str], sweep: str, write) -> None:
        self.params_path, self.ids, self.sweep, self.write = params_path, ids, sweep, write
        self.tried: list[str] = []  # evaluated here or failed to: the round's own evaluation retries
        self.evaluated: list[str] = []
        self.process = None
        super().__init__()

    def every(self) -> float:
        return POLL

    def tick(self) -> None:
        from multiprocessing import get_context

        new = [i for i in trained(self.ids) if i not in self.tried]
        if not new:
            return
        self.tried += new
        # not a daemon: an evaluation of several runs has a pool of processes of its own
        self.process = get_context("spawn").Process(target=evaluate_apart, args=(self.params_path, new, self.sweep))
        self.process.start()
        self.process.join()
        if self.process.exitcode == 0:
            self.evaluated += new
            try:
                self.write(self.evaluated)
            except Exception as err:  # a copy part-way is a precaution: never the shard's end
                say(f"shard: the partial shard file was not written ({one_line(err)})")

    def stop(self, grace: float | None = EVAL_GRACE) -> None:
        """No new evaluation starts; one in progress ends (stopped after `grace` s)."""
        super().stop(grace)
        if self.thread.is_alive() and self.process is not None:
            self.process.terminate()  # SIGTERM: the evaluation stops at once, keeping what it wrote
            self.thread.join()


class Snapshots(Watcher):
    """Every CARRY_EVERY seconds while the shard trains, `take()`: the runs in flight packed into the
    carry archive and the shard file written again (partial) naming it, so that a copy brought back
    before the machine is taken back resumes them from there, not from the last shard's archive."""

    def __init__(self, take) -> None:
        self.take = take
        super().__init__()

    def every(self) -> float:
        return CARRY_EVERY

    def tick(self) -> None:
        try:
            self.take()
        except Exception as err:  # a snapshot is a precaution: never the shard's end
            say(f"shard: no carry archive part-way this time ({one_line(err)})")


def evaluate_apart(params_path: Path, ids: list[str], sweep: str) -> None:
    """`AsFinished`'s evaluation, in a spawned process."""
    import sys

    from .stages import evaluate

    try:
        evaluate.run(params_path, only=ids, sweep_name=sweep)
    except (Exception, KeyboardInterrupt) as err:  # the round's own evaluation tries again and says why
        say(f"shard: evaluating {', '.join(ids)} as they finished failed ({one_line(err)}); the round's end "
            "evaluates them again")
        sys.exit(1)
