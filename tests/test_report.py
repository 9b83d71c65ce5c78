"""Reports from hand-made metrics with known answers: minimal widths, threshold crossing, exponent
fit, missing runs, a single run; the figures are rendered and inspected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import pytest
import yaml
from wandb_records import summary_of

from pipeline.report.collect import Grid, compute_curve, fit_power_law, load_metrics
from pipeline.report.figures import heatmap_panel, save
from pipeline.report.markdown import exponent_rows, min_width_table, report, runtime_report, statement

ROOT = Path(__file__).resolve().parents[1]
SEQ = {4: 40, 8: 160, 16: 640}


def record(task="ed", attention="standard", n=4, width=16, seed=0, acc=0.5, **extra):
    flops = extra.pop("flops", 1000.0 * width * SEQ[n])
    return {"task": task, "attention": attention, "n": n, "width": width, "seed": seed, "seq_len": SEQ[n],
            "graded_acc": acc, "exact_match": acc, "answer_acc": acc, "flops_per_sequence": flops,
            "train_seconds": extra.pop("seconds", width / 10), "device": "cpu", "sweep": "hand", **extra}


def known_grid() -> Grid:
    """standard solves every size at width 16; linear needs a width that doubles with n."""
    recs = []
    for n in (4, 8, 16):
        for width in (16, 32, 64, 128):
            recs.append(record(attention="standard", n=n, width=width, acc=0.995))
            need = {4: 16, 8: 32, 16: 64}[n]
            recs.append(record(attention="linear", n=n, width=width, acc=0.95 if width >= need else 0.2))
    return Grid(recs)


def test_minimal_width_and_threshold_crossing():
    grid = known_grid()
    assert [grid.min_width("ed", "standard", n, 0.9) for n in (4, 8, 16)] == [16, 16, 16]
    assert [grid.min_width("ed", "linear", n, 0.9) for n in (4, 8, 16)] == [16, 32, 64]
    assert grid.min_width("ed", "linear", 4, 0.95) == 16  # reaching the threshold exactly counts
    assert grid.min_width("ed", "linear", 4, 0.96) is None
    assert grid.min_width("ed", "standard", 4, 0.995) == 16 and grid.min_width("ed", "standard", 4, 0.996) is None
    table = min_width_table(grid, 0.9)
    assert "| linear | 16 | 32 | 64 |" in table and "| standard | 16 | 16 | 16 |" in table
    assert "| linear | none | none | none |" in min_width_table(grid, 0.99)


def test_exponent_fit_recovers_a_known_power_law():
    xs = [40, 160, 640, 2560]
    assert fit_power_law(xs, [3 * x**1.5 for x in xs]) == pytest.approx(1.5)
    assert fit_power_law([40], [1.0]) is None
    grid = known_grid()
    # flops = 1000 * width * L: standard's width is constant (exponent 1), linear's doubles per 4x L
    rows = {(r["attention"], r["threshold"]): r for r in exponent_rows(grid, [0.9])}
    assert rows["standard", 0.9]["flops_exponent"] == pytest.approx(1.0)
    assert rows["linear", 0.9]["flops_exponent"] == pytest.approx(1.5)
    curve = compute_curve(grid, "ed", "linear", 0.9)
    assert [p["width"] for p in curve] == [16, 32, 64] and [p["L"] for p in curve] == [40, 160, 640]


def test_statement_is_read_off_the_numbers():
    text = "\n".join(statement(known_grid(), 0.9))
    assert "standard reached it at 3 of 3 sizes (width 16 throughout)" in text
    assert "linear reached it at 3 of 3 sizes (width 16 at n=4, 32 at n=8 and 64 at n=16)" in text
    assert "linear 4.00x" in text  # 64 vs 16 wide at n=16, FLOPs proportional to width here
    assert "No run reached" in "\n".join(statement(known_grid(), 0.999))


def test_the_statement_says_which_sizes_are_still_open():
    """A grid being trained: a size where no width passed yet, with widths not trained, is open, not
    a finding."""
    recs = [r for r in known_grid().records if not (r["attention"] == "linear" and r["width"] >= 32)]
    recs = [r for r in recs if not (r["attention"] == "standard" and r["n"] == 16)]
    text = "\n".join(statement(Grid(recs), 0.9))
    assert "standard reached it at 2 of 3 sizes (width 16 throughout; 1 of 3 sizes still open" in text
    assert "linear reached it at 1 of 3 sizes (width 16 at n=4; 2 of 3 sizes still open" in text
    assert "still open" not in "\n".join(statement(known_grid(), 0.9))  # every width trained: settled


def test_missing_runs_are_marked_never_zero(tmp_path):
    recs = [r for r in known_grid().records if not (r["attention"] == "linear" and r["n"] == 8)]
    recs.append(record(attention="linear", n=8, width=16, acc=float("nan")))  # a failed run
    grid = Grid(recs)
    fig = heatmap_panel(grid, ["ed"], ["standard", "linear"], "test")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("failed") == 1 and texts.count("missing") == 3
    assert "99.5" in texts and "95.0" in texts and "20.0" in texts
    ax = fig.axes[0]
    assert ax.get_xlabel() == "" or ax.get_xlabel() == "embedding width"
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["16", "32", "64", "128"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["n=4\nL=40", "n=8\nL=160", "n=16\nL=640"]
    assert fig.axes[1].get_xlabel() == "embedding width" and ax.get_ylabel() == "problem size"
    assert "| linear | 16 | missing | 64 |" in min_width_table(grid, 0.9)  # n=8: its w16 failed
    # a width that ran and missed bounds the answer from below, up to the first width with no run
    missed = Grid([r for r in recs if not (r["attention"] == "linear" and r["n"] == 8)]
                  + [record(attention="linear", n=8, width=w, acc=a) for w, a in ((16, 0.2), (32, 0.5), (128, 0.3))])
    assert "| linear | 16 | missing (>32) | 64 |" in min_width_table(missed, 0.9)
    assert "1 of 3 sizes still open" in "\n".join(statement(missed, 0.9))  # n=8 stays open
    save(fig, tmp_path / "h.png")
    image = mpimg.imread(tmp_path / "h.png")
    assert image.shape[0] > 300 and image.shape[1] > 200 and image[..., :3].std() > 0.05


def test_a_run_under_way_is_drawn_as_training_never_as_a_number():
    recs = [r for r in known_grid().records if not (r["attention"] == "linear" and r["n"] == 8)]
    grid = Grid(recs, training={("ed", "linear", 8, 16): "1.5k of\n2k steps"})
    texts = [t.get_text() for ax in heatmap_panel(grid, ["ed"], ["linear"], "t").axes for t in ax.texts]
    assert "training\n1.5k of\n2k steps" in texts and texts.count("missing") == 3  # the other widths of n=8


def test_seed_spread_is_shown():
    grid = Grid([record(seed=0, acc=0.5), record(seed=1, acc=0.7)])
    cell = grid.cell("ed", "standard", 4, 16)
    assert cell.acc == pytest.approx(0.6) and cell.spread == (0.5, 0.7)
    fig = heatmap_panel(grid, ["ed"], ["standard"], "t")
    assert "60.0\n(50.0-70.0)" in [t.get_text() for t in fig.axes[0].texts]


def test_one_run_only():
    grid = Grid([record()])
    text = report(grid, [0.9], {})
    assert "runs: 1" in text and "No run reached 90%" in text and "Failed runs" not in text


BLOCK_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith(("torch.", "lightning")):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, NoTorch())
from pipeline.__main__ import main
sys.exit(main(["report"]))
"""


def test_report_stage_end_to_end_without_torch(tmp_path):
    results, runtime = tmp_path / "results", tmp_path / "runtime" / "train"
    results.mkdir()
    runtime.mkdir(parents=True)
    failed = record(task="lis", attention="linear", n=4, width=16, acc=None, run="lis-linear-bad",
                    reason="non-finite training loss between steps 1 and 10", status="failed")
    for i, r in enumerate(known_grid().records + [record(task="lis", n=4, width=16, acc=0.99), failed]):
        r = {"run": f"run{i}", **r}
        seconds = r.pop("train_seconds")
        # every field the evaluate stage writes (the stage checks them on reading)
        r = {"evaluation_key": "hand", "reason": None, "status": "finished", "steps": 10, "best_step": 10,
             "best_val_acc": r["graded_acc"], "stopped_early": False, "token_acc": r["graded_acc"],
             "answer_samples": 8, "params": 1000, **r, "flops_per_sequence": int(r["flops_per_sequence"]),
             "flops_by_part": {"total": int(r["flops_per_sequence"])}}
        (results / f"{r['run']}.json").write_text(json.dumps(r))
        (runtime / f"{r['run']}.json").write_text(json.dumps({
            "run": r["run"], "train_seconds": seconds, "segments": [seconds], "peak_gpu_gib": None, "device": "cpu",
            "git_rev": None, "versions": {"torch": "none"}, "sweep": "hand"}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"report": {"thresholds": [0.9, 0.99]}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
    result = subprocess.run([sys.executable, "-c", BLOCK_TORCH], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "reports" / "report.md").read_text()
    for name in ("figure1.png", "figure3.png", "compute.png"):
        assert f"figures/{name}" in text
        assert mpimg.imread(tmp_path / "reports" / "figures" / name).std() > 0.01
    assert "| linear | 16 | 32 | 64 |" in text
    assert "Failed runs (1)" in text and "lis-linear-bad: non-finite training loss between steps 1 and 10" in text
    assert "seconds" not in text.split("## Compute exponents")[1]  # timings live in runtime/
    timing = (tmp_path / "reports" / "runtime" / "report.md").read_text()
    assert "sweep (profile): hand" in timing and "seconds exponent" in timing
    assert mpimg.imread(tmp_path / "reports" / "runtime" / "seconds.png").std() > 0.01
    assert (tmp_path / "reports" / "plots" / "min_width.csv").read_text().startswith("task,attention")
    runs = [summary_of(f) for f in (tmp_path / "wandb").rglob("run-*.wandb")]
    assert len(runs) == 1 and runs[0]["run"]["job_type"] == "report" and runs[0]["run"]["group"] == "hand"
    logged = {key.split("/")[0] for key in runs[0]["summary"]}
    assert {"figure1", "figure3", "compute", "min_width"} <= logged
    assert runs[0]["summary"]["figure1/_type"] == "image-file" and runs[0]["summary"]["min_width/_type"] == "table-file"


def test_bad_metrics_file_is_named(tmp_path):
    (tmp_path / "broken.json").write_text(json.dumps({"task": "ed"}))
    with pytest.raises(ValueError, match="broken.json"):
        load_metrics(tmp_path)


def test_compute_figure_axes_and_fitted_slopes():
    from pipeline.report.figures import compute_figure

    fig = compute_figure(known_grid(), ["ed"], ["standard", "linear"], [0.9])
    flops, seconds = fig.axes[0], fig.axes[1]
    assert flops.get_xscale() == "log" and flops.get_yscale() == "log"
    assert flops.get_xlabel() == "sequence length L" and flops.get_ylabel() == "FLOPs per sequence"
    assert seconds.get_ylabel() == "training seconds"
    assert [t.get_text() for t in flops.get_xticklabels()] == ["40", "160", "640"]
    legend = [t.get_text() for t in flops.get_legend().get_texts()]
    assert legend == ["standard 90% (slope 1.00)", "linear 90% (slope 1.50)"]


def test_runtime_report_names_the_largest_peak_gpu_memory():
    about = {"sweeps": ["hand"], "devices": ["NVIDIA H200"], "git_revs": ["abc"], "software": "torch"}
    gpu = Grid([record(width=16, run="small", peak_gpu_gib=1.5), record(width=32, run="large", peak_gpu_gib=12.25),
                record(width=64, run="cpu-run", peak_gpu_gib=None)])
    assert "peak GPU memory of a run: 12.25 GiB at most (large; 2 of 3 runs" in runtime_report(gpu, [0.9], {}, about)
    cpu = Grid([record(width=16, run="small")])
    assert "peak GPU memory of a run: not recorded" in runtime_report(cpu, [0.9], {}, about)


def curve(*points: tuple[float, float]) -> list[dict]:
    """(millions of sequences, accuracy) pairs as a run's validation curve."""
    return [{"step": int(s * 1e6) // 512, "sequences": int(s * 1e6), "acc": a} for s, a in points]


def test_the_budget_table_reads_the_smallest_width_off_the_curves():
    from pipeline.report.collect import reached_within
    from pipeline.report.markdown import budget_table

    late = curve((2, 0.01), (8, 0.01), (20, 0.95), (24, 0.99))  # w16: learns after 8M
    early = curve((2, 0.5), (4, 0.95))  # w32: learns by 4M, and stops there
    short = curve((2, 0.01), (8, 0.01))  # a run that ended at 8M without learning
    assert reached_within({"curve": late}, 0.9, 8_000_000) is False
    assert reached_within({"curve": late}, 0.9, 32_000_000) is True
    assert reached_within({"curve": short}, 0.9, 32_000_000) is None  # cannot tell beyond where it ended
    assert reached_within({}, 0.9, 1) is None  # no curve
    grid = Grid([record(width=16, acc=0.99, curve=late), record(width=32, acc=0.99, curve=early),
                 record(attention="linear", width=16, acc=0.01, curve=short),
                 record(attention="linear", width=32, acc=0.95, curve=early)])
    assert [grid.min_width_within("ed", "standard", 4, 0.9, b) for b in (2e6, 8e6, 32e6)] == ["none", "32", "16"]
    assert [grid.min_width_within("ed", "linear", 4, 0.9, b) for b in (2e6, 8e6, 32e6)] == ["none", "32", "<=32"]
    table = budget_table(grid, 0.9, [2_000_000, 8_000_000, 32_000_000])
    assert "| standard | 2M | none |" in table and "|  | 32M | 16 |" in table
    assert "- ED n=4, standard: none at 2M, 32 at 8M, 16 at 32M" in table
    # "?" (cannot tell) against one answer is no change: at 2M no width passed and w64 has no curve;
    # by 8M w32 passed (at 6M), w16 did not
    unsure = Grid([record(attention="linear", width=16, acc=0.01, curve=short),
                 record(attention="linear", width=32, acc=0.95, curve=curve((2, 0.01), (6, 0.95))),
                 record(attention="linear", width=64, acc=None)])
    assert [unsure.min_width_within("ed", "linear", 4, 0.9, b) for b in (2e6, 8e6)] == ["?", "32"]
    assert "- nowhere" in budget_table(unsure, 0.9, [2_000_000, 8_000_000])


def test_the_learning_figure_draws_sequences_to_the_threshold_and_failures_apart():
    from pipeline.report.figures import learning_figure

    grid = Grid([record(width=16, acc=0.01, curve=curve((2, 0.01), (32, 0.01))),  # never reached: at 32M
                 record(width=32, acc=0.99, curve=curve((2, 0.01), (20, 0.95))),
                 record(width=32, seed=1, acc=0.99, curve=curve((2, 0.01), (24, 0.95))),  # trained twice
                 record(width=64, acc=0.99, curve=curve((2, 0.95))),
                 record(width=128, acc=0.99)])  # no curve (a run older than curves): not drawn
    ax = learning_figure(grid, ["ed"], ["standard"], 0.9).axes[0]
    reached, missed = ax.lines
    assert list(reached.get_xdata()) == [32, 32, 64] and list(reached.get_ydata()) == [20e6, 24e6, 2e6]
    assert list(missed.get_ydata()) == [32e6] and missed.get_marker() == "x"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["standard n=4", "standard: not reached"]


def test_the_runtime_report_names_each_revision_once_and_short():
    from pipeline.stages.report import provenance

    full = "20f2a6131ecb07536fca204bab33ee83d0ce0edf"
    records = [{"git_rev": full}, {"git_rev": full + "+dirty"}, {"git_rev": "abc1234+dirty"}, {"git_rev": "unknown"},
               {"git_rev": None}]
    assert provenance(records)["git_revs"] == ["20f2a6131ecb", "20f2a6131ecb+dirty", "abc1234+dirty", "unknown"]


def test_the_runtime_report_names_the_cpu_model_and_threads_of_cpu_runs():
    """On the CPU the model and the threads decide the weights in the last bits: the hardware line says
    both; a GPU's name stands alone, and a record from before the CPU was kept says `cpu`."""
    from pipeline.stages.report import provenance

    records = [{"device": "cpu", "cpu": "AMD EPYC 9654, 1 thread"}, {"device": "cpu", "cpu": "AMD EPYC 9654, 1 thread"},
               {"device": "cpu"}, {"device": "NVIDIA H100 80GB HBM3", "cpu": None}]
    assert provenance(records)["devices"] == ["NVIDIA H100 80GB HBM3", "cpu", "cpu (AMD EPYC 9654, 1 thread)"]
