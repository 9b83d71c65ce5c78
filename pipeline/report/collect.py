"""Results files to cells of the grid: (task, attention, n, width) -> accuracy over seeds.

Attention types are ordered and named as the attention registry says (`attention_order`,
`attention_label` in every results file, written by the evaluate stage), so a new type needs no
change here.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..records import Results, check

TASKS = ("arithmetic", "ed", "lis", "ed_local")
TITLES = {"arithmetic": "Arithmetic", "ed": "ED", "lis": "LIS", "ed_local": "ED_Local"}


@dataclass
class Cell:
    """All seeds of one (task, attention, n, width)."""

    task: str
    attention: str
    n: int
    width: int
    seq_len: int
    runs: list[dict] = field(default_factory=list)

    @property
    def accuracies(self) -> list[float]:
        return [r["graded_acc"] for r in self.runs if _finite(r.get("graded_acc"))]

    @property
    def reasons(self) -> list[str]:
        return [f"{r['run']}: {r.get('reason') or 'no accuracy'}" for r in self.runs
                if not _finite(r.get("graded_acc"))]

    @property
    def failed(self) -> bool:
        """Runs exist but none has a usable accuracy."""
        return bool(self.runs) and not self.accuracies

    @property
    def acc(self) -> float | None:
        return statistics.fmean(self.accuracies) if self.accuracies else None

    @property
    def spread(self) -> tuple[float, float] | None:
        return (min(self.accuracies), max(self.accuracies)) if len(self.accuracies) > 1 else None

    def mean(self, key: str) -> float | None:
        values = [r[key] for r in self.runs if _finite(r.get(key))]
        return statistics.fmean(values) if values else None


def _finite(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)




def load_metrics(folder: Path) -> list[dict]:
    """Every `*.json` of the folder; a file without the fields a report needs is an error."""
    records = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: cannot be read ({err})") from None
        records.append(check(record, Results, path))  # every field as the evaluate stage writes it
    return records


class Grid:
    """The cells of every task: sizes and widths are those seen for the task in any run, so a cell
    with no run is reported as missing, never as 0."""

    def __init__(self, records: list[dict], implied: set[tuple] = frozenset(),
                 planned: set[tuple] = frozenset(), training: dict[tuple, str] | None = None) -> None:
        """`implied`: (task, attention, n, width) of cells not trained because a narrower width of the
        same task, size and type passed (the width search); drawn as implied, never as a number.
        `planned`: cells of the sweep that may have no run yet (the paper's grid while it is trained),
        so that they show as missing; `training`: those of them whose run is under way -> how far it got
        (a run carried from one GPU lease to the next), drawn as such, never as a number."""
        self.records, self.implied, self.training = records, set(implied), dict(training or {})
        self.known = self.implied | set(planned) | set(self.training)
        self.cells: dict[tuple, Cell] = {}
        self.seq_len: dict[tuple[str, int], int] = {}
        for r in records:
            key = (r["task"], r["attention"], r["n"], r["width"])
            cell = self.cells.setdefault(key, Cell(r["task"], r["attention"], r["n"], r["width"], r["seq_len"]))
            cell.runs.append(r)
            self.seq_len[r["task"], r["n"]] = r["seq_len"]

    def tasks(self) -> list[str]:
        seen = {r["task"] for r in self.records}
        return [t for t in TASKS if t in seen] + sorted(seen - set(TASKS))

    def attentions(self) -> list[str]:
        """In the registry's order (the paper's row order: standard, linear, sparse)."""
        order = {k[1]: 10**6 for k in self.known if k[0] in self.tasks()}
        order.update({r["attention"]: r.get("attention_order", 10**6) for r in self.records})
        return sorted(order, key=lambda a: (order[a], a))

    def label(self, attention: str) -> str:
        return next((r["attention_label"] for r in self.records
                     if r["attention"] == attention and r.get("attention_label")), attention)

    def failures(self) -> list[str]:
        return [reason for cell in self.cells.values() for reason in cell.reasons]

    def sizes(self, task: str) -> list[int]:
        return sorted({r["n"] for r in self.records if r["task"] == task} | {k[2] for k in self.known if k[0] == task})

    def widths(self, task: str) -> list[int]:
        return sorted({r["width"] for r in self.records if r["task"] == task} | {k[3] for k in self.known
                                                                                 if k[0] == task})

    def cell(self, task: str, attention: str, n: int, width: int) -> Cell | None:
        return self.cells.get((task, attention, n, width))

    def length(self, task: str, n: int) -> str:
        """`n=12 (L=212)`, or `n=12` for a size with no run yet."""
        return f"n={n} (L={self.seq_len[task, n]})" if (task, n) in self.seq_len else f"n={n}"

    def untested_below(self, task: str, attention: str, n: int, width: int) -> bool:
        """Whether a width narrower than `width` has no accuracy (not trained yet, or failed)."""
        return any((c := self.cell(task, attention, n, w)) is None or c.acc is None
                   for w in self.widths(task) if w < width)

    def missed_up_to(self, task: str, attention: str, n: int, threshold: float) -> int | None:
        """The widest width up to which every width has an accuracy below the threshold (None: the
        narrowest has none, or reached it): a lower bound on the smallest sufficient width."""
        below = None
        for width in self.widths(task):
            cell = self.cell(task, attention, n, width)
            if cell is None or cell.acc is None or cell.acc >= threshold:
                break
            below = width
        return below

    def min_width(self, task: str, attention: str, n: int, threshold: float) -> int | None:
        """The smallest width whose mean accuracy reaches the threshold (None: no width does)."""
        for width in self.widths(task):
            cell = self.cell(task, attention, n, width)
            if cell is not None and cell.acc is not None and cell.acc >= threshold:
                return width
        return None

    def min_width_within(self, task: str, attention: str, n: int, threshold: float, budget: int) -> str:
        """The smallest width whose every run reached the threshold within `budget` sequences, read off
        the validation curves: "64"; "<=64" where a narrower width cannot tell (see `reached_within`);
        "none" where every width's curves show it did not; "?" where none did and some cannot tell."""
        unsure = False
        for width in self.widths(task):
            cell = self.cell(task, attention, n, width)
            if cell is None:
                unsure = True
                continue
            seen = [reached_within(r, threshold, budget) for r in cell.runs]
            if all(s is True for s in seen):
                return f"<={width}" if unsure else str(width)
            unsure = unsure or any(s is None for s in seen)
        return "?" if unsure else "none"

    def seeds(self) -> list[int]:
        return sorted({r["seed"] for r in self.records})


def sequences_to(curve: list[dict] | None, threshold: float) -> int | None:
    """Training sequences at the first validation that reached `threshold` (None: never, or no curve)."""
    return next((p["sequences"] for p in curve or [] if (p.get("acc") or 0.0) >= threshold), None)


def reached_within(run: dict, threshold: float, budget: int) -> bool | None:
    """Whether the run's validation accuracy reached `threshold` within `budget` training sequences;
    None where its curve cannot tell: no curve (a run older than curves), or a run that ended short of
    the budget (its cap, or a divergence) without reaching it."""
    curve = run.get("curve")
    if not curve:
        return None
    first = sequences_to(curve, threshold)  # a curve's points come in the order trained
    if first is not None and first <= budget:
        return True
    return False if curve[-1]["sequences"] >= budget else None


def fit_power_law(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares exponent b of y = a x^b (None with fewer than two distinct x)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len({p[0] for p in pts}) < 2:
        return None
    mx = statistics.fmean(p[0] for p in pts)
    my = statistics.fmean(p[1] for p in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def compute_curve(grid: Grid, task: str, attention: str, threshold: float) -> list[dict]:
    """For each size: the minimal width reaching the threshold, and that model's FLOPs per sequence
    and training seconds (absent where no width reaches it)."""
    points = []
    for n in grid.sizes(task):
        width = grid.min_width(task, attention, n, threshold)
        cell = grid.cell(task, attention, n, width) if width else None
        points.append({"n": n, "L": grid.seq_len.get((task, n)), "width": width,
                       "flops": cell.mean("flops_per_sequence") if cell else None,
                       "seconds": cell.mean("train_seconds") if cell else None})  # seconds: runtime report only
    return points
