"""Which runs a shard trains: the width search's frontier, in the order it queues (carried runs, the
cells named, the frontier), as many as fit the seconds given by their predicted price (`hours.prices`)
and the slowdown of sharing a GPU, or, with `--fill`, as many as the carry archive could carry should
the deadline cut them off.
"""

from __future__ import annotations

from pathlib import Path

from .carry import CARRY_BYTES, carry_sizes
from .execution.capacity import LAUNCH_BOUND_WIDTH, RUNS_PER_GPU, SHARED_GAIN
from .grid import FIGURES, cell_status, landed, searched_next, task_of
from .layout import PAPER_CELLS
from .params import Run, load_section

SAFETY = 0.8  # of the seconds given, what the chosen runs' predicted training may take together


def frontier(params_path: Path, figure: str | None, every_width: bool, folder: Path = PAPER_CELLS,
             here: dict[str, dict] | None = None) -> list[Run]:
    """The missing cells to train next, in the figures' order; `every_width`: every missing cell,
    not only the search's next width of each task, size and attention type; `here`: run id -> record
    of the cells this shard trained, counted as landed."""
    train = load_section(params_path, "train")
    records = {**landed(folder), **(here or {})}
    figures = [figure] if figure else list(FIGURES)
    chosen: dict[str, Run] = {}
    for fig in figures:
        tasks, attentions = FIGURES[fig]
        for run in train.runs:
            if task_of(run.dataset) not in tasks or run.attention not in attentions or run.id in chosen:
                continue
            if searched_next(run, train.widths, records) or (
                    every_width and cell_status(run, train.widths, records) == "missing"):
                chosen[run.id] = run
    return list(chosen.values())


def slowdown(chosen: list[Run], slots: int, gpus: int = 1) -> float:
    """What sharing a GPU multiplies each run's price by while the queue `chosen` keeps as many runs
    at once as it can (k on one GPU: max(1, k / gain), `SHARED_GAIN` where every run is launch-bound,
    else 1: no gain); one alone on its GPU takes its price."""
    if slots <= 1:
        return 1.0
    gain = SHARED_GAIN if all(r.width <= LAUNCH_BOUND_WIDTH for r in chosen) else 1.0
    per_gpu = -(-min(slots, len(chosen)) // max(gpus, 1))
    return max(1.0, per_gpu / gain) if per_gpu > 1 else 1.0


def wall(chosen: list[Run], prices: dict[str, float], slots: int, gpus: int = 1) -> float:
    """Predicted seconds to train the queue `chosen`: on one slot, one after another; on several, each
    run in order on the slot that frees first, the runs spread over `gpus`, each taking its price
    times the `slowdown` of sharing."""
    if slots <= 1:
        return sum(prices[r.id] for r in chosen)
    factor = slowdown(chosen, slots, gpus)
    ends = [0.0] * min(slots, len(chosen))
    for run in chosen:
        free = ends.index(min(ends))
        ends[free] += prices[run.id] * factor
    return max(ends)


def ahead(runs: list[Run], queue: list[Run], prices: dict[str, float], seconds: float, slots: int,
          gpus: int = 1) -> list[Run]:
    """`--fill`: of the `runs` that `filled` passed over and no later round would carry (`passed_over`:
    one cut off would lose what it trained), those that go ahead of the `queue`, cheapest first, one
    slot each, as far as each is predicted to finish within SAFETY x `seconds` beside the queue."""
    out: list[Run] = []
    for run in sorted(runs, key=lambda r: prices[r.id]):
        trial = out + [run]
        factor = slowdown((trial + queue)[:slots], slots, gpus)
        if len(trial) <= slots and max(prices[r.id] for r in trial) * factor <= SAFETY * seconds:
            out = trial
    return out


def passed_over(candidates: list[Run], todo: list[Run], named: list[str], sizes: dict[str, int],
                limit: int = CARRY_BYTES) -> list[Run]:
    """`--fill`: the candidates `filled` passed over that no later round would carry either, those that
    may go `ahead` of the queue: a cell named, and one of the frontier too large for the archive alone
    (the others wait for a round whose runs in flight leave it room)."""
    return [r for r in candidates if r not in todo and (r.id in named or sizes[r.id] > limit)]


def fitting(runs: list[Run], prices: dict[str, float], seconds: float, slots: int = 1, gpus: int = 1) -> list[Run]:
    """The runs, cheapest first, whose predicted training as one queue (`wall`) takes no more than
    SAFETY x `seconds`."""
    out: list[Run] = []
    for run in sorted(runs, key=lambda r: prices[r.id]):
        if wall(out + [run], prices, slots, gpus) <= SAFETY * seconds:
            out.append(run)
    return out


def slots_of(concurrency: int, gpus: int) -> int:
    """Runs the train stage trains at once here: its `concurrency`, else (auto) RUNS_PER_GPU on each
    GPU (memory permitting: a run that does not fit waits, which the wide runs' gain of 1 prices) and
    one on a CPU."""
    return concurrency or (RUNS_PER_GPU * gpus if gpus else 1)


def queue(carried: list[Run], named: list[Run], search: list[Run], queued: list[str]) -> list[Run]:
    """A round's candidates in the order they queue: the carried runs, the cells named, then the
    search's frontier; each once, and none queued in an earlier round."""
    out: dict[str, Run] = {}
    for run in (*carried, *named, *search):
        if run.id not in queued:
            out.setdefault(run.id, run)
    return list(out.values())


def too_large(params_path: Path, limit: int | None = None) -> dict[str, int]:
    """Every run of the sweep too large for the carry archive alone (`limit` bytes, by default
    CARRY_BYTES), one that must finish in the shard that trains it -> its bytes."""
    train = load_section(params_path, "train")
    return {run_id: size for run_id, size in carry_sizes(params_path, train, train.runs).items()
            if size > (limit or CARRY_BYTES)}


def uncarried(params_path: Path, folder: Path = PAPER_CELLS, large: dict[str, int] | None = None) -> dict[str, int]:
    """The frontier's cells (every figure's) of `large` (`too_large`, by default worked out here) -> their
    bytes: a shard trains one only if it will finish there."""
    large = too_large(params_path) if large is None else large
    return {r.id: large[r.id] for r in frontier(params_path, None, False, folder) if r.id in large}


def filled(candidates: list[Run], sizes: dict[str, int], slots: int, limit: int = CARRY_BYTES) -> list[Run]:
    """`--fill`: the candidates in order, as one queue, as far as the carry archive (`limit` bytes) can hold any
    `slots` of them (the most that can be in flight, and so cut off, at the deadline; a run that has
    not started has nothing to carry). A run too large to carry is passed over: cut off, it would lose
    what it trained."""
    out: list[Run] = []
    for run in candidates:
        largest = sorted((sizes[r.id] for r in out + [run]), reverse=True)[:slots]
        if sum(largest) <= limit:
            out.append(run)
    return out
