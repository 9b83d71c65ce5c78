"""The written report: tables and a plain statement, all computed from the metrics."""

from __future__ import annotations

from .collect import TITLES, Grid, compute_curve, fit_power_law


def _fmt_width(grid: Grid, task: str, attention: str, n: int, threshold: float) -> str:
    width = grid.min_width(task, attention, n, threshold)
    if width:  # "<=64" where a narrower width has no accuracy yet
        return f"<={width}" if grid.untested_below(task, attention, n, width) else str(width)
    cells = [grid.cell(task, attention, n, w) for w in grid.widths(task)]
    if all(c is not None and c.acc is not None for c in cells):  # "none" only when every width really ran
        return "none"
    below = grid.missed_up_to(task, attention, n, threshold)
    return f"missing (>{below})" if below else "missing"


def min_width_table(grid: Grid, threshold: float) -> str:
    lines = [f"Smallest width reaching {100 * threshold:g}% (\"none\": no width of the sweep did; "
             "\"missing\": none did, but some widths have no run or a failed one, \"(>w)\": every width up to w "
             "ran and did not; \"<=w\": w did, and a narrower width has no run or a failed one).", ""]
    for task in grid.tasks():
        sizes = grid.sizes(task)
        header = " | ".join(grid.length(task, n) for n in sizes)
        lines.append(f"| {TITLES.get(task, task)} | {header} |")
        lines.append("| --- |" + " --- |" * len(sizes))
        for attention in grid.attentions():
            cells = [_fmt_width(grid, task, attention, n, threshold) for n in sizes]
            lines.append(f"| {attention} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def budget_table(grid: Grid, threshold: float, budgets: list[int]) -> str:
    """The smallest sufficient width at each training budget, read off the runs' validation curves,
    and where a larger budget changed the answer."""
    def millions(b: int) -> str:
        return f"{b / 1e6:g}M" if b >= 1e6 else f"{b / 1e3:g}k"

    lines = [f"Smallest width whose validation accuracy reached {100 * threshold:g}% within each budget of "
             "training sequences (\"<=w\": a narrower width's curve cannot tell, as its run ended short of the "
             "budget or has no curve; \"?\": no width reached it and some cannot tell).", ""]
    changed = []
    for task in grid.tasks():
        sizes = grid.sizes(task)
        lines.append(f"| {TITLES.get(task, task)} | budget | " + " | ".join(f"n={n}" for n in sizes) + " |")
        lines.append("| --- | --- |" + " --- |" * len(sizes))
        for attention in grid.attentions():
            answers = {n: [grid.min_width_within(task, attention, n, threshold, b) for b in budgets] for n in sizes}
            for i, budget in enumerate(budgets):
                lines.append(f"| {attention if i == 0 else ''} | {millions(budget)} | "
                             + " | ".join(answers[n][i] for n in sizes) + " |")
            # where two answers differ ("?" cannot tell, so it changes nothing), with every budget's:
            # the same answer at 2M and 32M can hide another at 8M
            changed += [f"- {TITLES.get(task, task)} n={n}, {attention}: "
                        + ", ".join(f"{a} at {millions(b)}" for a, b in zip(answers[n], budgets))
                        for n in sizes if len(set(answers[n]) - {"?"}) > 1]
        lines.append("")
    lines += ["Where a larger budget changed the answer:", ""] + (changed or ["- nowhere"]) + [""]
    return "\n".join(lines)


def exponent_rows(grid: Grid, thresholds: list[float]) -> list[dict]:
    rows = []
    for task in grid.tasks():
        for attention in grid.attentions():
            for threshold in thresholds:
                pts = [p for p in compute_curve(grid, task, attention, threshold) if p["width"]]
                rows.append({
                    "task": task, "attention": attention, "threshold": threshold, "points": len(pts),
                    "flops_exponent": fit_power_law([p["L"] for p in pts], [p["flops"] for p in pts if p["flops"]])
                    if all(p["flops"] for p in pts) else None,
                    "seconds_exponent": fit_power_law([p["L"] for p in pts], [p["seconds"] for p in pts])
                    if all(p["seconds"] for p in pts) else None,
                })
    return rows


def exponent_table(rows: list[dict], columns=("flops_exponent", "seconds_exponent")) -> str:
    def f(x):
        return "-" if x is None else f"{x:.2f}"

    heads = {"flops_exponent": "FLOPs exponent", "seconds_exponent": "seconds exponent"}
    lines = ["| task | attention | threshold | sizes reached | " + " | ".join(heads[c] for c in columns) + " |",
             "| --- | --- | --- | --- |" + " --- |" * len(columns)]
    for r in rows:
        lines.append(f"| {TITLES.get(r['task'], r['task'])} | {r['attention']} | {100 * r['threshold']:g}% | "
                     f"{r['points']} | " + " | ".join(f(r[c]) for c in columns) + " |")
    return "\n".join(lines)


def statement(grid: Grid, threshold: float) -> list[str]:
    """Plain sentences read off the minimal widths; nothing here is fixed in advance."""
    out = []
    for task in grid.tasks():
        sizes = grid.sizes(task)
        parts = []
        for attention in grid.attentions():
            widths = {n: grid.min_width(task, attention, n, threshold) for n in sizes}
            reached = [n for n in sizes if widths[n]]
            # sizes no width reached yet while some width has no run: the answer there is still open
            open_ = sum(_fmt_width(grid, task, attention, n, threshold).startswith("missing") for n in sizes)
            still = f"{open_} of {len(sizes)} sizes still open: widths with no run or a failed one" if open_ else ""
            if not reached:
                parts.append(f"{attention} reached {100 * threshold:g}% at no size" + (f" ({still})" if still else ""))
                continue
            if len(reached) > 1 and len({widths[n] for n in reached}) == 1:
                trend = f"width {widths[reached[0]]} throughout"
            else:  # each size reached, the middle ones too
                each = [f"{widths[n]} at n={n}" for n in reached]
                trend = "width " + (", ".join(each[:-1]) + " and " + each[-1] if len(each) > 1 else each[0])
            parts.append(f"{attention} reached it at {len(reached)} of {len(sizes)} sizes ({trend}"
                         + (f"; {still})" if still else ")"))
        out.append(f"- {TITLES.get(task, task)}: " + "; ".join(parts) + ".")
        # compute at the largest size that every type reached
        common = [n for n in sizes if all(grid.min_width(task, a, n, threshold) for a in grid.attentions())]
        if common and "standard" in grid.attentions():
            n = common[-1]
            flops = {a: compute_curve(grid, task, a, threshold) for a in grid.attentions()}
            at_n = {a: next(p["flops"] for p in flops[a] if p["n"] == n) for a in grid.attentions()}
            if all(at_n.values()):
                ratios = ", ".join(f"{a} {at_n[a] / at_n['standard']:.2f}x"
                                   for a in grid.attentions() if a != "standard")
                out.append(f"  At n={n}, the largest size all types reached, the smallest sufficient models cost "
                           f"(FLOPs per sequence, relative to standard): {ratios}.")
    if not any(grid.min_width(t, a, n, threshold) for t in grid.tasks() for a in grid.attentions()
               for n in grid.sizes(t)):
        out.append(f"- No run reached {100 * threshold:g}%: at this profile the data cannot answer the question; "
                   "run a larger profile (README: Reproducing the paper's figures).")
    return out


def report(grid: Grid, thresholds: list[float], figures: dict[str, str], budgets: list[int] = (),
           source: str | None = None) -> str:
    """The report: determined by the results alone (a re-run on other hardware writes the same
    file). Timings, hardware and revisions are in `runtime_report`."""
    records = grid.records
    seeds = grid.seeds()
    names = ", ".join(f"{a} ({grid.label(a)})" for a in grid.attentions())
    lines = [
        "# Do efficient Transformers really save computation? Results",
        "",
        f"Generated by the `report` stage from {source or 'the results of every evaluated run (`results/*.json`)'}; "
        "every number below is computed from those files. Training times, hardware and code revisions "
        "depend on the machine and the moment: they are in [runtime/report.md](runtime/report.md).",
        "",
        "## Setup",
        "",
        f"- runs: {len(records)} ({len(grid.tasks())} task{'s' * (len(grid.tasks()) != 1)}, attention types {names}), "
        f"seeds: {', '.join(map(str, seeds))}",
        "- accuracy: exact match of the whole chain (teacher forcing) for ED, LIS and ED_Local; the answer after "
        "free greedy generation for arithmetic. Both are in the results files for every task.",
    ]
    if len(seeds) > 1:
        lines.append("- cells show the mean over seeds and, below it, the range (min-max)")
    failures = grid.failures()
    if failures:
        lines += ["", f"## Failed runs ({len(failures)})", "",
                  "Shown as `failed` in the figures and never counted as 0% or as reaching a threshold:", ""]
        lines += [f"- {reason}" for reason in failures]
    lines += ["", "## What the data shows", ""]
    for threshold in thresholds:
        lines.append(f"At {100 * threshold:g}% accuracy:")
        lines += statement(grid, threshold)
        lines.append("")
    lines += ["## Figures", ""]
    for caption, path in figures.items():
        lines += [f"**{caption}**", "", f"![{caption}]({path})", ""]
    lines += ["## Smallest sufficient width", ""]
    for threshold in thresholds:
        lines += [min_width_table(grid, threshold), ""]
    if budgets and any(r.get("curve") for r in records):
        lines += ["## The budget: smallest sufficient width within a number of training sequences", ""]
        lines += [budget_table(grid, threshold, sorted(budgets)) for threshold in thresholds]
    lines += ["## Compute exponents", "",
              "Fitted exponent b of FLOPs per sequence ~ L^b for the smallest model reaching the threshold at "
              "each size (\"-\": fewer than two sizes reached).", "",
              exponent_table(exponent_rows(grid, thresholds), ("flops_exponent",)), ""]
    return "\n".join(lines)


def runtime_report(grid: Grid, thresholds: list[float], figures: dict[str, str], provenance: dict) -> str:
    """What depends on the machine and the moment: training time, hardware, software, revisions."""
    seconds = sum(r.get("train_seconds") or 0 for r in grid.records)
    peaks = [r for r in grid.records if r.get("peak_gpu_gib")]
    largest = max(peaks, key=lambda r: r["peak_gpu_gib"]) if peaks else None
    memory = (f"{largest['peak_gpu_gib']:.2f} GiB at most ({largest['run']}; {len(peaks)} of {len(grid.records)} "
              "runs recorded theirs), allocated by a run's process while it trained" if largest else
              "not recorded (no run trained on a GPU)")
    lines = [
        "# Runtime of the runs in ../report.md",
        "",
        "Run-dependent: written by the `report` stage from `runtime/`, apart from the results, so that "
        "re-running the pipeline elsewhere changes only this folder.",
        "",
        f"- sweep (profile): {', '.join(provenance['sweeps']) or 'unknown'}",
        f"- hardware: {', '.join(provenance['devices']) or 'unknown'}",
        f"- software: {provenance['software']}",
        f"- code: git {', '.join(provenance['git_revs']) or 'unknown'}",
        f"- total training time: {seconds:.0f} s ({seconds / 3600:.2f} h), the sum over runs and over the "
        "segments of resumed runs (runs that trained side by side on one GPU overlap in wall-clock time)",
        f"- peak GPU memory of a run: {memory}",
        "",
    ]
    for caption, path in figures.items():
        lines += [f"**{caption}**", "", f"![{caption}]({path})", ""]
    lines += ["Fitted exponent b of training seconds ~ L^b for the smallest model reaching the threshold.", "",
              exponent_table(exponent_rows(grid, thresholds), ("seconds_exponent",)), ""]
    return "\n".join(lines)
