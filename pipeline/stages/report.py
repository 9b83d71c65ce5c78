"""The `report` stage: figures, tables and reports/report.md from metrics/*.json, also logged to a
W&B run of its own (job type `report`) in the sweep's group."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from ..params import ReportParams, load_section
from ..report.collect import Grid, compute_curve, load_metrics
from ..report.figures import compute_figure, heatmap_panel, save
from ..report.markdown import report
from .io import check_writable
from .tracking import wandb_options

METRICS = Path("metrics")
OUT = Path("reports")


def provenance(records: list[dict]) -> dict:
    software = sorted({", ".join(f"{k} {v}" for k, v in sorted(r.get("versions", {}).items())) for r in records} - {""})
    return {
        "sweeps": sorted({r["sweep"] for r in records if r.get("sweep")}),
        "devices": sorted({r["device"] for r in records if r.get("device")}),
        "git_revs": sorted({r["git_rev"][:12] + ("+dirty" if r["git_rev"].endswith("+dirty") else "")
                            for r in records if r.get("git_rev")}),
        "software": "; ".join(software) or "unknown",
    }


def figures(grid: Grid, thresholds: list[float], folder: Path) -> dict[str, str]:
    """Render every figure that the runs allow; returns caption -> path relative to reports/."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    main = [t for t in ("arithmetic", "ed", "lis") if t in grid.tasks()]
    attentions = grid.attentions()
    plans = [
        ("Figure 1: accuracy by width and problem size (rows: attention type; columns: task)", "figure1.png",
         main, attentions),
        ("Figure 2: ED_Local (DP with locality)", "figure2.png", ["ed_local"] if "ed_local" in grid.tasks() else [],
         [a for a in ("sparse", "linear", "standard") if a in attentions]),
        ("Figure 3: ED for the three models", "figure3.png", ["ed"] if "ed" in grid.tasks() else [], attentions),
    ]
    for caption, name, tasks, rows in plans:
        if tasks and rows:
            if name == "figure3.png":  # the three models side by side
                fig = heatmap_panel_transposed(grid, tasks[0], rows, caption)
            else:
                fig = heatmap_panel(grid, tasks, rows, caption)
            save(fig, folder / name)
            made[caption] = f"{folder.name}/{name}"
    caption = "Compute against problem size for the smallest sufficient model"
    save(compute_figure(grid, grid.tasks(), attentions, thresholds), folder / "compute.png")
    made[caption] = f"{folder.name}/compute.png"
    return made


def heatmap_panel_transposed(grid: Grid, task: str, attentions: list[str], title: str):
    import matplotlib.pyplot as plt

    from ..report.figures import heatmap

    fig, axes = plt.subplots(1, len(attentions), figsize=(3.8 * len(attentions), 3.4), squeeze=False,
                             layout="constrained")
    for c, attention in enumerate(attentions):
        heatmap(axes[0][c], grid, task, attention)
    fig.suptitle(title)
    return fig


def write_plot_data(grid: Grid, thresholds: list[float], path: Path) -> list[dict]:
    rows = [{"task": t, "attention": a, "threshold": th, "n": p["n"], "L": p["L"], "min_width": p["width"],
             "flops": p["flops"], "seconds": p["seconds"]}
            for t in grid.tasks() for a in grid.attentions() for th in thresholds
            for p in compute_curve(grid, t, a, th)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["task"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def log_to_wandb(made: dict[str, str], rows: list[dict], out: Path, sweep: str) -> None:
    import wandb

    run = wandb.init(group=sweep, job_type="report", name=f"report-{sweep}", **wandb_options())
    run.log({Path(p).stem: wandb.Image(str(out / p), caption=c) for c, p in made.items()})
    if rows:
        run.log({"min_width": wandb.Table(columns=list(rows[0]), data=[list(r.values()) for r in rows])})
    run.finish()


def run(params_path: Path = Path("params.yaml"), metrics: Path = METRICS, out: Path = OUT) -> None:
    params: ReportParams = load_section(params_path, "report")
    records = load_metrics(metrics) if metrics.is_dir() else []
    if not records:
        raise FileNotFoundError(f"no metrics in {metrics}: run the evaluate stage first")
    check_writable(out)
    grid = Grid(records)
    made = figures(grid, params.thresholds, out / "figures")
    rows = write_plot_data(grid, params.thresholds, out / "plots" / "min_width.csv")
    text = report(grid, params.thresholds, made, provenance(records))
    tmp = out / ".report.md.tmp"
    tmp.write_text(text)
    tmp.replace(out / "report.md")
    sweeps = provenance(records)["sweeps"]
    log_to_wandb(made, rows, out, sweeps[0] if len(sweeps) == 1 else "mixed")
    print(f"report: {len(records)} runs -> {out / 'report.md'}, {len(made)} figures", file=sys.stderr)
