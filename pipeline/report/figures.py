"""The paper's figures from our runs: accuracy heatmaps and compute against problem size."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

from .collect import TITLES, Grid, compute_curve, fit_power_law, sequences_to  # noqa: E402

MISSING, FAILED, IMPLIED, TRAINING = "missing", "failed", "implied", "training"


def heatmap(ax, grid: Grid, task: str, attention: str) -> None:
    """x: width, y: problem size (n and L), colour and text: accuracy in %. A cell without a run
    is hatched grey and says `missing` (`failed` where runs gave no accuracy): never a 0; a cell the
    width search implied (a narrower width passed) is pale green and says `implied`; one whose run is
    under way is pale yellow and says `training` and how far it got."""
    sizes, widths = grid.sizes(task), grid.widths(task)
    values = np.full((len(sizes), len(widths)), np.nan)
    for i, n in enumerate(sizes):
        for j, w in enumerate(widths):
            cell = grid.cell(task, attention, n, w)
            if cell is not None and cell.acc is not None:
                values[i, j] = 100 * cell.acc
    ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=0, vmax=100, origin="lower", aspect="auto")
    for i, n in enumerate(sizes):
        for j, w in enumerate(widths):
            cell = grid.cell(task, attention, n, w)
            if cell is None and (task, attention, n, w) in grid.implied:  # a narrower width passed: not trained
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="#d9ead3", edgecolor="0.6"))
                ax.text(j, i, f"{IMPLIED}\n(narrower\npassed)", ha="center", va="center", fontsize=6)
                continue
            if cell is None and (task, attention, n, w) in grid.training:  # carried between GPU leases
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="#fff2cc", edgecolor="0.6"))
                ax.text(j, i, f"{TRAINING}\n{grid.training[task, attention, n, w]}", ha="center", va="center",
                        fontsize=6)
                continue
            if cell is None or cell.acc is None:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.85", hatch="//", edgecolor="0.6"))
                ax.text(j, i, FAILED if cell is not None else MISSING, ha="center", va="center", fontsize=7)
                continue
            text = f"{100 * cell.acc:.1f}"
            if cell.spread:  # to the same tenth as the mean: runs at 99.6 and 99.9 are not "100-100"
                text += f"\n({100 * cell.spread[0]:.1f}-{100 * cell.spread[1]:.1f})"
            ax.text(j, i, text, ha="center", va="center", fontsize=6 if cell.spread else 7,
                    color="white" if cell.acc < 0.6 else "black")
    ax.set_xticks(range(len(widths)), [str(w) for w in widths])
    ax.set_yticks(range(len(sizes)), [f"n={n}\nL={grid.seq_len[task, n]}" if (task, n) in grid.seq_len else f"n={n}"
                                      for n in sizes])
    ax.set_xlabel("embedding width")
    ax.set_ylabel("problem size")
    ax.set_title(f"{grid.label(attention)} - {TITLES.get(task, task)}", fontsize=9)


def heatmap_panel(grid: Grid, tasks: list[str], attentions: list[str], title: str) -> Figure:
    fig, axes = plt.subplots(len(attentions), len(tasks), figsize=(3.8 * len(tasks) + 1.2, 3.0 * len(attentions)),
                             squeeze=False, layout="constrained")
    for r, attention in enumerate(attentions):
        for c, task in enumerate(tasks):
            heatmap(axes[r][c], grid, task, attention)
            if r < len(attentions) - 1:
                axes[r][c].set_xlabel("")
    mappable = plt.cm.ScalarMappable(norm=plt.Normalize(0, 100), cmap="viridis")
    fig.colorbar(mappable, ax=axes, shrink=0.8, label="accuracy (%)")
    fig.suptitle(title)
    return fig


MEASURES = (("flops", "FLOPs per sequence"), ("seconds", "training seconds"))


def compute_figure(grid: Grid, tasks: list[str], attentions: list[str], thresholds: list[float],
                   measures=MEASURES) -> Figure:
    """Per task: FLOPs per sequence (top) and training seconds (bottom), or the measures asked for,
    of the smallest model that reaches each threshold, against sequence length, log-log, with the
    fitted exponent."""
    fig, axes = plt.subplots(len(measures), len(tasks), figsize=(4 * len(tasks), 3.5 * len(measures)),
                             squeeze=False, layout="constrained")
    styles = ["-", "--", ":", "-."]
    for c, task in enumerate(tasks):
        for a, attention in enumerate(attentions):
            colour = f"C{a}"  # one colour per model, in the registry's order
            for k, threshold in enumerate(thresholds):
                points = [p for p in compute_curve(grid, task, attention, threshold) if p["width"]]
                for row, (key, _) in enumerate(measures):
                    pts = [p for p in points if p[key]]
                    if not pts:
                        continue
                    xs, ys = [p["L"] for p in pts], [p[key] for p in pts]
                    slope = fit_power_law(xs, ys)  # None below two sizes: a single point has no slope
                    label = f"{attention} {100 * threshold:g}%" + (f" (slope {slope:.2f})" if slope is not None else "")
                    axes[row][c].loglog(xs, ys, styles[k % len(styles)] if slope is not None else "none",
                                        marker="o", color=colour, label=label)
        for row, (_, name) in enumerate(measures):
            ax = axes[row][c]
            ax.set_xlabel("sequence length L")
            ax.set_ylabel(name)
            ax.set_title(f"{TITLES.get(task, task)}: {name}", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            if ax.lines:  # ticks at the task's sequence lengths, written plainly, on at least a decade
                lengths = sorted(grid.seq_len[task, n] for n in grid.sizes(task) if (task, n) in grid.seq_len)
                ax.set_xlim(*at_least_a_decade(lengths[0] / 1.2, lengths[-1] * 1.2))
                ax.set_xticks(lengths)
                ax.tick_params(axis="x", labelrotation=45, labelsize=7)
                ax.xaxis.set_major_formatter(ScalarFormatter())
                ax.xaxis.set_minor_formatter(NullFormatter())
                values = [y for line in ax.lines for y in line.get_ydata()]
                ax.set_ylim(*at_least_a_decade(min(values) / 1.5, max(values) * 1.5))
            if ax.lines:
                ax.legend(fontsize=6)
            else:
                ax.text(0.5, 0.5, "no model reached\nthe threshold", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle("Smallest model reaching the threshold: compute against problem size")
    return fig


def learning_figure(grid: Grid, tasks: list[str], attentions: list[str], threshold: float) -> Figure:
    """Per task: the training sequences each run took to reach `threshold` (its first validation at
    or above it) against width, a line per model and size. A run that never reached it is an x at
    the sequences it saw (the cap, or where it stopped): drawn as a failure, never as a time."""
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.4 * len(tasks), 3.8), squeeze=False, layout="constrained")
    markers = "osD^v<>p"
    for c, task in enumerate(tasks):
        ax = axes[0][c]
        for a, attention in enumerate(attentions):
            shift = 2 ** (0.06 * (a - (len(attentions) - 1) / 2))  # the models' x's side by side, not on top
            label = f"{attention}: not reached"
            for k, n in enumerate(grid.sizes(task)):
                reached, missed = [], []
                for width in grid.widths(task):
                    cell = grid.cell(task, attention, n, width)
                    for run in [r for r in (cell.runs if cell else []) if r.get("curve")]:
                        seen = sequences_to(run["curve"], threshold)
                        if seen is None:
                            missed.append((width, run["curve"][-1]["sequences"]))
                        else:
                            reached.append((width, seen))
                if reached:
                    ax.plot(*zip(*sorted(reached)), marker=markers[k % len(markers)], color=f"C{a}",
                            label=f"{attention} n={n}")
                if missed:
                    ax.plot([w * shift for w, _ in missed], [y for _, y in missed], "x", color=f"C{a}",
                            markersize=7, label=label)
                    label = None  # one legend entry a model
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(grid.widths(task), [str(w) for w in grid.widths(task)])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("embedding width")
        ax.set_ylabel(f"training sequences to {100 * threshold:g}%")
        ax.set_title(f"{TITLES.get(task, task)}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=6)
        else:
            ax.text(0.5, 0.5, "no validation curves", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(f"How long each run took to reach {100 * threshold:g}% validation accuracy")
    return fig


def at_least_a_decade(low: float, high: float) -> tuple[float, float]:
    """Log-axis limits around [low, high] spanning at least a factor of 10, so that a small difference
    is not stretched over the whole height."""
    if high / low >= 10:
        return low, high
    middle = (low * high) ** 0.5
    return middle / 10**0.5, middle * 10**0.5


def save(fig: Figure, path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
