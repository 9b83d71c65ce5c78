"""The training-throughput benchmark runs end to end on the CPU and writes the fields it promises
(the GPU numbers come from `python -m pipeline bench-train` on the H200)."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import train as bench_train
from benchmarks.baseline import BaselineGPT


def test_baseline_is_causal():
    model = BaselineGPT(vocab=12, max_len=20, width=16, dropout=0.0).eval()
    x = torch.randint(1, 12, (2, 20))
    y = x.clone()
    y[:, 10:] = torch.randint(1, 12, (2, 10))
    torch.testing.assert_close(model(x)[:, :10], model(y)[:, :10])


def test_bench_train_writes_every_type_with_a_ratio(tmp_path):
    out = tmp_path / "train.json"
    result = bench_train.run(out, "cpu", [(16, 44)], batch=8, warmup=1, steps=2, train_size=200, git="test")
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert {"device", "git_rev", "command", "records"} <= set(saved)
    # which machine: the same device kind has come with hosts whose CPUs differ 2x
    assert set(saved["host"]) == {"name", "cpu", "cpus", "op_dispatch_us"} and saved["host"]["op_dispatch_us"] > 0
    # every registered type, plus the sparse paths it benchmarks on its own
    assert {r["attention"] for r in saved["records"]} == {"standard", "sparse", "linear", "sparse_blocks",
                                                          "sparse_dense"}
    for r in saved["records"]:
        assert r["tokens_per_s"] > 0 and r["baseline_tokens_per_s"] > 0 and r["L"] == 44
        assert r["ratio"] == r["tokens_per_s"] / r["baseline_tokens_per_s"] and r["mfu"] is None


def test_schedule_study_records_curves_composes_and_plots(tmp_path):
    from benchmarks import schedule as convergence

    chosen = convergence.configs(["lis_n3"], ["standard", "linear"], [16], [3e-3], [0.0], {"standard": 0.1})
    assert [c.name for c in chosen] == ["lis_n3-standard-w16-lr0.003-d0", "lis_n3-standard-w16-lr0.003-d0.1",
                                        "lis_n3-linear-w16-lr0.003-d0"]
    # a first job trains one configuration, a second the others: one study
    convergence.run(tmp_path, chosen[:1], batch=16, sequences=160, val_every=5, warmup=2, stop_at=1.0,
                    train_size=300, git="test")
    study = convergence.run(tmp_path, chosen, batch=16, sequences=160, val_every=5, warmup=2, stop_at=1.0,
                            train_size=300, git="test")
    assert list(study["runs"]) == [c.name for c in chosen]
    for record in study["runs"].values():
        assert [p["sequences"] for p in record["curve"]] == [80, 160] and record["status"] == "finished"
        assert record["settings"]["decay_fraction"] == 0.0 and record["git_rev"] == "test"
        assert all(0.0 <= p["acc"] <= 1.0 for p in record["curve"])
    # a configuration that no longer fits the budget is left for a later run, not cut short
    more = convergence.configs(["lis_n3"], ["linear"], [16], [1e-3], [0.0], {})
    assert convergence.estimate(study, more[0]) == study["runs"][chosen[2].name]["seconds"]
    assert list(convergence.run(tmp_path, more, batch=16, sequences=160, val_every=5, warmup=2, stop_at=1.0,
                                train_size=300, git="test", budget=0.0)["runs"]) == [c.name for c in chosen]
    convergence.plot(tmp_path)
    table = (tmp_path / "table.md").read_text()
    assert (tmp_path / "curves.png").stat().st_size > 0 and all(c.name in table for c in chosen)


def test_a_study_configuration_out_of_time_keeps_its_curve_as_cut_off_and_is_trained_again(tmp_path):
    from benchmarks import schedule as convergence
    from pipeline.data import verify
    from pipeline.generation import write_dataset
    from pipeline.tasks import make_task

    config, = convergence.configs(["lis_n3"], ["standard"], [16], [3e-3], [0.0], {})
    folder = tmp_path / "lis_n3"
    write_dataset(make_task("lis", 3), {"train": 300, "val": 64, "test": 16}, 0, folder)
    long = convergence.settings(config, batch=16, sequences=16 * 20_000, val_every=5, warmup=2, stop_at=1.0)
    record = convergence.train_curve(config, folder, verify(folder), long, tmp_path / "work", seconds=1.0)
    assert record["status"] == "cut off" and 0 < record["curve"][-1]["step"] < 20_000 and record["seconds"] < 60
    # the next run trains a cut-off configuration again, whole
    (tmp_path / "study.json").write_text(json.dumps({"runs": {config.name: record}}))
    study = convergence.run(tmp_path, [config], batch=16, sequences=160, val_every=5, warmup=2, stop_at=1.0,
                            train_size=300, git="test")
    assert study["runs"][config.name]["status"] == "finished" and study["runs"][config.name]["curve"][-1]["step"] == 10


def test_a_study_process_killed_from_outside_leaves_its_curve(tmp_path):
    """A GPU lease that ends kills the study's processes: the curve written after each validation
    (out/partial/) is what remains, taken into the study as cut off and trained again next time."""
    from benchmarks import schedule as convergence
    from pipeline.data import verify
    from pipeline.generation import write_dataset
    from pipeline.tasks import make_task

    config, = convergence.configs(["lis_n3"], ["standard"], [16], [3e-3], [0.0], {})
    folder = tmp_path / "lis_n3"
    write_dataset(make_task("lis", 3), {"train": 300, "val": 64, "test": 16}, 0, folder)
    partial = tmp_path / "out" / "partial" / f"{config.name}.json"
    run_settings = convergence.settings(config, batch=16, sequences=160, val_every=5, warmup=2, stop_at=1.0)
    convergence.train_curve(config, folder, verify(folder), run_settings, tmp_path / "work", partial=partial,
                            extra={"git_rev": "test"})
    kept = json.loads(partial.read_text())  # as a killed process would leave it
    assert kept["status"] == "cut off" and [p["sequences"] for p in kept["curve"]] == [80, 160]
    assert kept["git_rev"] == "test"
    assert convergence.load_study(tmp_path / "out")["runs"][config.name] == kept
    study = convergence.run(tmp_path / "out", [config], batch=16, sequences=160, val_every=5, warmup=2,
                            stop_at=1.0, train_size=300, git="test")
    assert study["runs"][config.name]["status"] == "finished" and not partial.exists()


def test_a_decayed_schedule_is_its_own_configuration():
    from benchmarks import schedule as convergence

    constant, = convergence.configs(["ed_n12"], ["linear"], [256], [1e-3], [0.1], {})
    decayed, = convergence.configs(["ed_n12"], ["linear"], [256], [1e-3], [0.1], {}, decay=0.2, cap=8_192_000)
    assert constant.name == "ed_n12-linear-w256-lr0.001-d0.1"  # as in the committed study
    assert decayed.name == "ed_n12-linear-w256-lr0.001-d0.1-decay0.2-cap8.192M"
    settings = convergence.settings(decayed, batch=512, sequences=8_192_000, val_every=250, warmup=200, stop_at=0.995)
    assert settings["decay_fraction"] == 0.2 and settings["max_steps"] == 16000
    assert convergence.settings(constant, 512, 8_192_000, 250, 200, 0.995)["decay_fraction"] == 0.0


def test_the_study_can_train_at_the_profiles_width_scaled_rate():
    """--lr-width: a configuration trains, and is named, at the rate a profile gives its width (sparse
    w512 once trained at 1e-3 by passing --lrs 1e-3, where the profiles' rule gives 5e-4)."""
    from benchmarks import schedule as convergence

    as_given = convergence.configs(["ed_n12"], ["sparse"], [256, 512], [1e-3], [0.1], {}, decay=0.2, cap=8_192_000)
    scaled = convergence.configs(["ed_n12"], ["sparse"], [128, 256, 512, 1024], [1e-3], [0.1], {}, decay=0.2,
                                 cap=8_192_000, lr_width=256)
    assert [c.lr for c in as_given] == [1e-3, 1e-3]
    assert [c.lr for c in scaled] == [1e-3, 1e-3, 5e-4, 2.5e-4]
    assert scaled[2].name == "ed_n12-sparse-w512-lr0.0005-d0.1-decay0.2-cap8.192M"
    assert convergence.settings(scaled[2], 512, 8_192_000, 250, 200, 0.995)["lr"] == 5e-4


def test_first_sequences_at_a_threshold():
    from benchmarks.schedule import first_at

    points = [{"sequences": 10, "acc": 0.5}, {"sequences": 20, "acc": 0.95}, {"sequences": 30, "acc": 0.999}]
    assert first_at(points, 0.9) == 20 and first_at(points, 0.99) == 30 and first_at(points, 1.0) is None


def test_sweep_benchmark_times_both_legs_and_the_evaluation(tmp_path):
    out = tmp_path / "sweep.json"
    result = bench_train.run_sweep(out, steps=2, train_size=200, batch=8, git="test", widths=[8], test_size=16)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert set(result["seconds"]) == {"sequential_eager", "stage_default", "evaluate_stage_default"}
    assert result["runs"] == 3 and len(result["evaluate"]["seconds_per_run"]) == 3
    for whole, test, generation in zip(*(sorted(result["evaluate"][k]) for k in (
            "seconds_per_run", "test_seconds_per_run", "generation_seconds_per_run"))):
        assert 0 < generation <= test <= whole
    assert result["speedup"] > 0 and result["evaluate"]["over_training"] > 0 and result["complete"]


def test_a_sweep_benchmark_cut_off_in_its_baseline_keeps_the_stage_and_evaluation(tmp_path, monkeypatch):
    from pipeline.stages import train as train_stage

    real = train_stage.run

    def cut_off(params_path, *args, **kwargs):  # the time limit, arriving during the eager baseline
        if "sequential_eager" in params_path.read_text():
            raise TimeoutError("killed")
        return real(params_path, *args, **kwargs)

    monkeypatch.setattr(train_stage, "run", cut_off)
    out = tmp_path / "sweep.json"
    with pytest.raises(TimeoutError):
        bench_train.run_sweep(out, steps=2, train_size=200, batch=8, git="test", widths=[8], test_size=16)
    kept = json.loads(out.read_text())
    assert set(kept["seconds"]) == {"stage_default", "evaluate_stage_default"}
    assert kept["complete"] is False and kept["speedup"] is None and len(kept["evaluate"]["seconds_per_run"]) == 3


def test_sweep_benchmark_times_each_stage_configuration_asked_for(tmp_path):
    out = tmp_path / "sweep.json"
    result = bench_train.run_sweep(out, steps=2, train_size=200, batch=8, git="test", widths=[8], test_size=16,
                                   stage=("3:none", "1:auto"), phases=("stage", "eager"))
    assert set(result["seconds"]) == {"stage_c3_none", "stage_c1_auto", "sequential_eager"}
    assert set(result["speedups"]) == {"stage_c3_none", "stage_c1_auto"} and result["speedup"] is None
    assert all(len(runs) == 3 and min(runs.values()) > 0 for runs in result["train_seconds_per_run"].values())
    assert result["complete"] and not result["evaluate"] and "--sweep-stage 3:none,1:auto" in result["command"]


@pytest.mark.parametrize("stage, phases, message", [(("auto",), ("stage",), "CONCURRENCY:COMPILE"),
                                                    (("auto:auto",), ("stage", "evals"), "unknown")])
def test_sweep_benchmark_refuses_a_bad_configuration_before_training(tmp_path, stage, phases, message):
    with pytest.raises(ValueError, match=message):
        bench_train.run_sweep(tmp_path / "sweep.json", steps=2, train_size=200, batch=8, stage=stage, phases=phases)
    assert not (tmp_path / "sweep.json").exists()


def test_a_bad_sweep_phase_is_one_line_from_the_command_line(tmp_path):
    import subprocess
    import sys

    command = ["train", "--sweep", "--sweep-phases", "stage,evals", "--out", str(tmp_path / "sweep.json")]
    result = subprocess.run([sys.executable, "-m", "benchmarks", *command], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: train: --sweep-phases: unknown ['evals'] (known: stage, evaluate, eager, eager_priced)"]
    assert not (tmp_path / "sweep.json").exists()


def test_sweep_benchmark_prices_the_eager_leg_from_each_runs_timed_step(tmp_path):
    out = tmp_path / "sweep.json"
    result = bench_train.run_sweep(out, steps=2, train_size=200, batch=8, git="test", widths=[8], test_size=16,
                                   phases=("stage", "eager_priced"))
    priced = result["eager_priced"]
    assert set(result["seconds"]) == {"stage_default"} and result["complete"] and result["speedup"] is None
    runs = result["train_seconds_per_run"]["stage_default"]
    assert len(priced["per_run"]) == 3 and set(priced["per_run"]) == set(runs)
    assert all(r["step_seconds"] > 0 and r["startup_seconds"] > 0 for r in priced["per_run"].values())
    assert result["speedup_priced"] == pytest.approx(priced["seconds"] / result["seconds"]["stage_default"])
    assert json.loads(out.read_text())["speedups_priced"] == {"stage_default": result["speedup_priced"]}


def test_the_eager_price_is_start_up_plus_the_steps_after_warm_up(tmp_path, monkeypatch):
    from pipeline.data import verify

    timed = {8: (2.0, 0.01), 16: (3.0, 0.02)}  # width: start-up, seconds a step

    def cell(folder, meta, attention, width, batch, device, warmup, steps, work, mode, options=None):
        assert mode == "none" and (warmup, steps) == (bench_train.PRICE_WARMUP, bench_train.PRICE_STEPS)
        return {"startup_seconds": timed[width][0], "step_seconds": timed[width][1]}

    monkeypatch.setattr(bench_train, "stage_tokens_per_s", cell)
    folder = bench_train.dataset(tmp_path, 44, 100, test_size=16)
    priced = bench_train.price_eager(folder, verify(folder), [8, 16], 8, 1010, "cpu", tmp_path / "work")
    assert priced["per_run"][f"{folder.name}-linear-w16-s0"]["seconds"] == pytest.approx(3.0 + 1000 * 0.02)
    assert priced["seconds"] == pytest.approx(3 * (2.0 + 1000 * 0.01 + 3.0 + 1000 * 0.02))
