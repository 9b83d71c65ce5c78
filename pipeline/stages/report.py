"""The `report` stage: figures, tables and reports/report.md from results/*.json, also logged to a W&B
run of its own (job type `report`) in the sweep's group.

reports/report.md, reports/figures/ and reports/plots/ are determined by the results; what depends on
the machine and the moment (training seconds, hardware, revisions, from runtime/) goes to
reports/runtime/. Runs without torch: nothing here imports it.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

from ..execution import cli
from ..execution.io import check_file_target, check_writable, remove_temporaries, say, write_text
from ..execution.tracking import check_tracking, tracking, wandb_options
from ..layout import PARAMS, REPORTS, RESULTS, RUNTIME_TRAIN
from ..params import ReportParams, load_section
from ..provenance import short_rev
from ..records import TrainRuntime, load
from ..report.collect import Grid, compute_curve, load_metrics
from ..report.figures import compute_figure, heatmap, heatmap_panel, learning_figure, save
from ..report.markdown import report, runtime_report


def provenance(records: list[dict]) -> dict:
    software = sorted({", ".join(f"{k} {v}" for k, v in sorted(r.get("versions", {}).items())) for r in records} - {""})
    return {
        "sweeps": sorted({r["sweep"] for r in records if r.get("sweep")}),
        "devices": sorted({f"cpu ({r['cpu']})" if r.get("device") == "cpu" and r.get("cpu") else r["device"]
                           for r in records if r.get("device")}),
        "git_revs": sorted({short_rev(r["git_rev"]) for r in records if r.get("git_rev")}),
        "software": "; ".join(software) or "unknown",
    }


def figures(grid: Grid, thresholds: list[float], folder: Path) -> dict[str, str]:
    """Render every figure that the runs allow; returns caption -> path relative to reports/."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    main = [t for t in ("arithmetic", "ed", "lis") if t in grid.tasks()]
    attentions = grid.attentions()
    plans = [
        ("Figure 1: accuracy by width and problem size (rows: attention type; columns: task)", "figure1.png", main),
        ("Figure 2: ED_Local (DP with locality)", "figure2.png", ["ed_local"] if "ed_local" in grid.tasks() else []),
        ("Figure 3: ED for the three models", "figure3.png", ["ed"] if "ed" in grid.tasks() else []),
    ]
    for caption, name, tasks in plans:
        if tasks and attentions:
            if name == "figure3.png":  # the models side by side
                fig = heatmap_row(grid, tasks[0], attentions, caption)
            else:
                fig = heatmap_panel(grid, tasks, attentions, caption)
            save(fig, folder / name)
            made[caption] = f"{folder.name}/{name}"
    caption = "Compute against problem size for the smallest sufficient model"
    save(compute_figure(grid, grid.tasks(), attentions, thresholds, (("flops", "FLOPs per sequence"),)),
         folder / "compute.png")
    made[caption] = f"{folder.name}/compute.png"
    if any(r.get("curve") for r in grid.records):  # runs older than validation curves have none
        threshold = thresholds[0]
        caption = (f"Training sequences to {100 * threshold:g}% validation accuracy against width "
                   "(x: never reached, at the sequences the run saw)")
        save(learning_figure(grid, grid.tasks(), attentions, threshold), folder / "learning.png")
        made[caption] = f"{folder.name}/learning.png"
    return made


def heatmap_row(grid: Grid, task: str, attentions: list[str], title: str):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(attentions), figsize=(3.8 * len(attentions), 3.4), squeeze=False,
                             layout="constrained")
    for c, attention in enumerate(attentions):
        heatmap(axes[0][c], grid, task, attention)
    fig.suptitle(title)
    return fig


def plot_rows(grid: Grid, thresholds: list[float]) -> list[dict]:
    return [{"task": t, "attention": a, "threshold": th, "n": p["n"], "L": p["L"], "min_width": p["width"],
             "flops": p["flops"]}
            for t in grid.tasks() for a in grid.attentions() for th in thresholds
            for p in compute_curve(grid, t, a, th)]


def csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["task"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def log_to_wandb(made: dict[str, str], rows: list[dict], out: Path, sweep: str) -> None:
    import wandb

    run = wandb.init(group=sweep, job_type="report", name=f"report-{sweep}", **wandb_options())
    run.log({Path(p).stem: wandb.Image(str(out / p), caption=c) for c, p in made.items()})
    if rows:
        run.log({"min_width": wandb.Table(columns=list(rows[0]), data=[list(r.values()) for r in rows])})
    run.finish()


def run(params_path: Path = PARAMS, results: Path = RESULTS, runtime: Path = RUNTIME_TRAIN,
        out: Path = REPORTS, implied: set[tuple] = frozenset(), records: list[dict] | None = None,
        planned: set[tuple] = frozenset(), source: str | None = None,
        training: dict[tuple, str] | None = None) -> None:
    """`implied`: cells the width search did not train; `records`: the results, if not those in the
    folder `results` (the paper's report: the landed cells, `grid.all_landed`); `planned`: cells of
    the sweep with no result yet, drawn as missing; `source`: where the results came from, in words;
    `training`: cells whose run is under way -> how far it got."""
    params: ReportParams = load_section(params_path, "report")
    check_tracking()
    if records is None:
        records = load_metrics(results) if results.is_dir() else []
    if not records:
        raise FileNotFoundError(f"no results in {results}: run the evaluate stage first")
    timings = {r["run"]: load(runtime / f"{r['run']}.json", TrainRuntime) or {} for r in records}
    for target in (out / "report.md", out / "plots" / "min_width.csv", out / "runtime" / "report.md"):
        check_file_target(target)  # before anything is drawn or written
    for folder in (out, out / "figures", out / "plots", out / "runtime"):
        check_writable(folder)
        remove_temporaries(folder, depth=0)  # what a killed earlier attempt was writing
    grid = Grid(records, implied, planned, training)
    made = figures(grid, params.thresholds, out / "figures")
    rows = plot_rows(grid, params.thresholds)
    write_text(out / "plots" / "min_width.csv", csv_text(rows))
    write_text(out / "report.md", report(grid, params.thresholds, made, params.budgets, source))
    # a run's timing from runtime/, or from its own record (a landed cell of the paper's grid carries it)
    merged = [{**r, **{k: v for k, v in timings[r["run"]].items() if k != "run"}} for r in records]
    timed = Grid(merged)
    save(compute_figure(timed, timed.tasks(), timed.attentions(), params.thresholds,
                        (("seconds", "training seconds"),)), out / "runtime" / "seconds.png")
    extra = {"Training seconds against problem size for the smallest sufficient model": "seconds.png"}
    write_text(out / "runtime" / "report.md", runtime_report(timed, params.thresholds, extra,
                                                              provenance(merged)))
    sweeps = provenance(merged)["sweeps"]
    if tracking():
        log_to_wandb({**made, "training seconds": "runtime/seconds.png"}, rows, out,
                     sweeps[0] if len(sweeps) == 1 else "mixed")
    say(f"report: {len(records)} runs -> {out / 'report.md'}, {len(made)} figures")


def main(argv: list[str] | None = None) -> int:
    top = cli.parser("python -m pipeline.stages.report",
                     "DVC stage: figures, tables and reports/report.md (params.yaml's report section)")
    cli.params_option(top)
    return cli.command(top, lambda a: run(a.params), argv)


if __name__ == "__main__":
    sys.exit(main())
