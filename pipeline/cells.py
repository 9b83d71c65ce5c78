"""The paper's landed cells (reports/paper/cells.json), one row each: what the cell reached and when,
what it cost and where it was made; then the width search's check (cells above a passing width,
trained anyway), the cells trained more than once, where the cells that fail off the floor fail, and
the GPU-hours spent against `predict-hours`' price of the same cells."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .grid import first_records, gpu_hours, in_progress, passes
from .provenance import short_rev
from .report.collect import sequences_to

OFF_FLOOR = 0.05  # a failing cell at or above this accuracy learned part of the task: where does it fail?


def _millions(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.2f}M"


def _acc(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _made(r: dict, field: str) -> str:
    """Where or how a run was made (`field`: device, compile or git_rev); for a run carried over shards
    that differ in it, each in turn with the step its part ended at ("?": not recorded)."""
    def short(value: str) -> str:  # a commit hash reads as its 7-digit form, as most were recorded
        return short_rev(value, 7) if field == "git_rev" else value

    if not r.get("segments"):
        return short(r.get(field) or "-")
    parts: list[list] = []  # [value, the last step trained with it]
    for segment in r["segments"]:
        value = short(segment[field] or "?")
        if parts and parts[-1][0] == value:
            parts[-1][1] = segment["steps"]
        else:
            parts.append([value, segment["steps"]])
    return ", ".join([f"{v} (to {n})" for v, n in parts[:-1]] + [parts[-1][0]])


def _row(r: dict, price: float | None) -> str:
    curve = r.get("curve")
    seen = curve[-1]["sequences"] if curve else None
    return (f"| {r['run']} | {r['status']} | {_acc(r['graded_acc'])} | {_millions(sequences_to(curve, 0.9))} | "
            f"{_millions(sequences_to(curve, 0.99))} | {_millions(seen)} | {r['train_seconds']:.0f} | "
            f"{'-' if price is None else f'{price:.0f}'} | {_made(r, 'device')} | {_made(r, 'compile')} | "
            f"{_made(r, 'git_rev')} |")


def _errors(r: dict, most: int = 3) -> str:
    """Exact match by sequence length (of how many), and the target positions with the largest share
    of wrong tokens."""
    by_length, by_position = r["exact_by_length"], r["wrong_by_position"]
    lengths = ", ".join(f"L={n}: {e / s:.2f} ({s})" for n, e, s in
                        zip(by_length["length"], by_length["exact"], by_length["sequences"]))
    share = sorted(zip(by_position["position"], by_position["wrong"], by_position["graded"]),
                   key=lambda x: (-x[1] / x[2], x[0]))[:most]
    return f"| {r['run']} | {_acc(r['graded_acc'])} | {lengths} | " + \
        ", ".join(f"{p}: {w / g:.2f}" for p, w, g in share) + " |"


def cells_report(records: list[dict], prices: dict[str, float], shards: dict[str, dict] | None = None,
                 carry: Path | None = None) -> str:
    """`records`: every landed record (a cell trained twice has two); `prices`: run id -> the seconds
    `predict-hours` prices it at, alone, to the profile's cap; `shards`: the landed shards."""
    key = lambda r: (r["task"], r["n"], r["attention"], r["width"], r["seed"])  # noqa: E731
    records = sorted(records, key=key)
    lines = ["# The paper's landed cells", "",
             "Every cell trained on a GPU and landed (`python -m pipeline land`), from `cells.json`. Accuracy: "
             "graded test accuracy; sequences to 90% and 99%: the first validation that reached it (validation "
             "accuracy, on the validation split); seconds: the run's own training seconds (runs of one shard "
             "share the GPU); price: what `predict-hours` prices the run at alone, to the cap; compiled: how its "
             "training steps ran (`train.compile`). A run carried over shards that differ in device, compilation or "
             "revision names each in turn, with the step its part ended at.", "",
             "| run | status | accuracy | sequences to 90% | to 99% | sequences seen | seconds | price (s) | device "
             "| compiled | revision |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [_row(r, prices.get(r["run"])) for r in records]

    narrowest: dict[tuple, int] = {}  # (task, n, attention, seed) -> its narrowest passing width
    for r in records:
        if passes(r):
            group = (r["task"], r["n"], r["attention"], r["seed"])
            narrowest[group] = min(r["width"], narrowest.get(group, r["width"]))
    checks = [(r, w) for r in records
              if (w := narrowest.get((r["task"], r["n"], r["attention"], r["seed"]))) is not None and w < r["width"]]
    lines += ["", "## The search's check: cells above a passing width, trained anyway", ""]
    if checks:
        held = sum(passes(r) for r, _ in checks)
        lines += [f"The search takes a cell above the narrowest passing width (90%) as passing. {held} of "
                  f"{len(checks)} such cells trained anyway passed.", "",
                  "| run | implied by | accuracy | passes |", "| --- | --- | --- | --- |"]
        lines += [f"| {r['run']} | w{w} | {_acc(r['graded_acc'])} | {'yes' if passes(r) else 'no'} |"
                  for r, w in checks]
    else:
        lines.append("None trained yet.")

    twice = defaultdict(list)
    for r in records:
        twice[r["run"]].append(r)
    twice = {run: rs for run, rs in twice.items() if len(rs) > 1}
    lines += ["", "## Cells trained more than once: the spread", ""]
    if twice:
        lines += ["| run | accuracies | sequences to 90% | sequences to 99% | seconds |",
                  "| --- | --- | --- | --- | --- |"]
        for run, rs in twice.items():
            lines.append(f"| {run} | {', '.join(_acc(r['graded_acc']) for r in rs)} | "
                         f"{', '.join(_millions(sequences_to(r.get('curve'), 0.9)) for r in rs)} | "
                         f"{', '.join(_millions(sequences_to(r.get('curve'), 0.99)) for r in rs)} | "
                         f"{', '.join(str(round(r['train_seconds'])) for r in rs)} |")
    else:
        lines.append("None yet.")

    off = [r for r in records if r.get("exact_by_length") and r.get("wrong_by_position") and not passes(r)
           and (r["graded_acc"] or 0) >= OFF_FLOOR]
    lines += ["", "## Where the cells that fail off the floor fail", ""]
    if off:
        lines += [f"Cells below 90% and at or above {OFF_FLOOR:.0%}: exact match of the whole chain by sequence "
                  "length on the test split (of how many sequences), and the target positions with the largest "
                  "share of wrong tokens.", "",
                  "| run | accuracy | by sequence length | most wrong positions |", "| --- | --- | --- | --- |"]
        lines += [_errors(r) for r in off]
    else:
        lines.append("None with the breakdown (recorded by evaluations since f09a6ce).")

    first = first_records(records)
    going_on = in_progress(shards or {}, first)
    kept = in_progress(shards or {}, first, carry) if carry else going_on
    lines += ["", "## In progress: carried to the next shard, not landed", ""]
    lost = " (the archive was not landed: restarts)"
    if going_on:
        lines += ["| run | steps done | carry archive |", "| --- | --- | --- |"]
        lines += [f"| {run} | {'-' if n is None else n} | {archive}{'' if archive in kept else lost} |"
                  for archive, runs in going_on.items() for run, n in runs.items()]
    else:
        lines.append("None.")

    landed_runs = {r["run"] for r in records}
    crashed = [(run, why, name) for name, s in sorted((shards or {}).items())
               for run, why in (s.get("crashed") or {}).items() if run not in landed_runs]
    lines += ["", "## Failed with an error (a crash, not a divergence), not landed since", ""]
    if crashed:
        lines += ["| run | why | shard |", "| --- | --- | --- |"]
        lines += [f"| {run} | {why.replace('|', '/')} | {name} |" for run, why, name in crashed]
    else:
        lines.append("None.")

    priced = sum(prices.get(r["run"], 0.0) for r in records) / 3600
    going = carried_hours(records, shards or {})
    lines += ["", "## Cost", "",
              f"- GPU-hours spent: {gpu_hours(records, shards):.2f} (each shard's wall-clock seconds: generation, "
              "training and evaluation; times its host's GPUs)",
              f"- of which shards whose runs are all still in progress (carried): {going:.2f}",
              f"- `predict-hours`' price of the same {len(records)} runs, each alone to the cap: {priced:.2f} h",
              f"- the runs' own training seconds, summed: {sum(r['train_seconds'] for r in records) / 3600:.2f} h", ""]
    return "\n".join(lines)


def carried_hours(records: list[dict], shards: dict[str, dict]) -> float:
    """GPU-hours of the landed shards that landed no cell and whose carried runs have not landed since:
    training still in progress."""
    from_shard, runs = {r.get("shard") for r in records}, {r["run"] for r in records}
    going = {n: s for n, s in shards.items()
             if n not in from_shard and any(c not in runs for c in s.get("carried") or [])}
    return gpu_hours([], going)
