"""Where the paper's grid stands: landed cells, the width search's implied cells, GPU-hours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from settings import generate_section, train_section

from pipeline.__main__ import main
from pipeline.grid import land, status
from pipeline.records import CorruptFile


def landed(run: str, acc: float | None, status: str = "finished", seconds: float = 1800.0, device: str = "NVIDIA H100"):
    dataset, attention, width, seed = run.rsplit("-", 3)
    return {"evaluation_key": "k", "run": run, "task": dataset.rsplit("_n", 1)[0], "n": int(dataset.rsplit("_n")[1]),
            "attention": attention, "width": int(width[1:]), "seed": int(seed[1:]), "seq_len": 40, "status": status,
            "reason": None if status == "finished" else "non-finite loss", "steps": 100, "best_step": 100,
            "best_val_acc": acc, "stopped_early": False, "exact_match": acc, "answer_acc": acc, "token_acc": acc,
            "graded_acc": acc, "answer_samples": 8, "params": 1000, "flops_per_sequence": 10, "flops_by_part": {},
            "curve": [{"step": 100, "sequences": 51200, "acc": acc}], "train_seconds": seconds, "eval_seconds": 10.0,
            "peak_gpu_gib": 1.0, "device": device, "git_rev": "abc", "versions": {"torch": "2.11"},
            "command": "python -m pipeline shard"}


@pytest.fixture
def params(tmp_path) -> Path:
    path = tmp_path / "params.yaml"
    tasks = {"ed": {"sizes": [4], "options": {"using": 8}}, "lis": {"sizes": [6], "options": {"number_range": None}}}
    path.write_text(yaml.safe_dump({"generate": generate_section(tasks=tasks),
                                    "train": train_section(datasets=["ed_n4", "lis_n6"],
                                                           attentions=["standard", "sparse", "linear"],
                                                           widths=[16, 32, 64])}))
    return path


@pytest.fixture
def tiny_paper(tmp_path, monkeypatch) -> Path:
    """A paper-like sweep of two tiny LIS runs (w16, w32) that train in seconds, run from `tmp_path`."""
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "generate": generate_section(tasks={"lis": {"sizes": [5], "options": {"number_range": None}}}, train_size=200),
        "train": train_section(widths=[16, 32], max_steps=4, val_every=2, sweep="paper"),
        "evaluate": {"batch_size": 16, "generation_samples": 4, "concurrency": 1}}))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(tmp_path)
    return params


def shard(tmp_path: Path, name: str, records: list[dict]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"runs": records}))
    return path


def test_landed_cells_and_the_search_decide_the_status(tmp_path, params):
    runs = tmp_path / "paper" / "cells.json"
    first = shard(tmp_path, "a.json", [landed("ed_n4-standard-w16-s0", 0.95), landed("ed_n4-linear-w16-s0", 0.2),
                                       landed("ed_n4-sparse-w16-s0", None, "failed"),
                                       landed("lis_n6-linear-w32-s0", 0.99, device="cpu")])
    assert land([first], runs) == ["ed_n4-standard-w16-s0", "ed_n4-linear-w16-s0", "ed_n4-sparse-w16-s0",
                                   "lis_n6-linear-w32-s0"]
    state = status(params, runs, prices={r: 3600.0 for r in _ids()})
    # ED: standard w16 passed, so w32 and w64 are implied; linear w16 trained and failed the threshold
    # the search trains linear w32 and sparse w32 next (w16 landed without passing), w64 after them
    assert state["figures"]["3"] == {"cells": 9, "trained": 2, "implied": 2, "failed": 1, "missing": 4,
                                     "next": 2, "hours_left": 4.0, "hours_next": 2.0}
    assert state["figures"]["1"]["cells"] == 18 and state["figures"]["1"]["trained"] == 3
    assert state["figures"]["2"] == {"cells": 0, "trained": 0, "implied": 0, "failed": 0, "missing": 0,
                                     "next": 0, "hours_left": 0.0, "hours_next": 0.0}
    assert state["gpu_hours"] == pytest.approx(3 * 1810 / 3600, abs=1e-3)  # the CPU-trained cell is not GPU time

    # landing the same shard again writes nothing; a second training of a cell lands beside the first
    assert land([first], runs) == []
    again = shard(tmp_path, "b.json", [landed("ed_n4-standard-w16-s0", 0.97)])
    assert land([again], runs) == ["ed_n4-standard-w16-s0"]
    from pipeline.grid import all_landed
    from pipeline.grid import landed as first_records

    assert [r["graded_acc"] for r in all_landed(runs) if r["run"] == "ed_n4-standard-w16-s0"] == [0.95, 0.97]
    assert first_records(runs)["ed_n4-standard-w16-s0"]["graded_acc"] == 0.95
    assert status(params, runs)["figures"]["3"]["trained"] == 2


def _ids() -> list[str]:
    return [f"{d}-{a}-w{w}-s0" for d in ("ed_n4", "lis_n6") for a in ("standard", "sparse", "linear")
            for w in (16, 32, 64)]


def test_a_damaged_shard_lands_nothing(tmp_path):
    runs = tmp_path / "cells.json"
    bad = landed("ed_n4-standard-w16-s0", 0.95)
    bad["train_seconds"] = "long"
    path = shard(tmp_path, "bad.json", [landed("ed_n4-linear-w16-s0", 0.5), bad])
    with pytest.raises(CorruptFile, match=r"bad.json: runs\[1\]: train_seconds"):
        land([path], runs)
    damaged = tmp_path / "carried.json"
    damaged.write_text(json.dumps({"runs": [], "carried": 5}))
    with pytest.raises(CorruptFile, match="carried.json: carried: not a mapping of run ids"):
        land([damaged], runs)
    assert not runs.exists()


def test_grid_status_command_prints_json(tmp_path, params, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the committed benchmark file prices the cells
    runs = tmp_path / "cells.json"
    land([shard(tmp_path, "a.json", [landed("ed_n4-standard-w16-s0", 0.95)])], runs)
    assert main(["grid-status", "--params", str(params), "--landed", str(runs), "--json"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["figures"]["3"]["trained"] == 1 and state["figures"]["3"]["implied"] == 2
    assert state["figures"]["3"]["hours_left"] > state["figures"]["3"]["hours_next"] > 0 and state["gpu_hours"] > 0
    assert main(["grid-status", "--params", str(params), "--landed", str(runs)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| 3 |"))
    # ED: standard w16 passed (w32, w64 implied); sparse and linear w16 are next, their w32 and w64 missing after
    left, following = state["figures"]["3"]["hours_left"], state["figures"]["3"]["hours_next"]
    assert row == f"| 3 | 9 | 1 | 2 | 0 | 6 | 2 | {left:.1f} / {following:.1f} |"
    assert state["uncarried"] == {}  # widths 16-64: every cell of the frontier can be carried
    assert state["figures"]["3"]["too_large"] == 0 and state["figures"]["3"]["hours_too_large"] == 0
    # an archive of 1 KB carries none of them: each is named with its size and price alone
    import pipeline.plan

    monkeypatch.setattr(pipeline.plan, "CARRY_BYTES", 1024)
    assert main(["grid-status", "--params", str(params), "--landed", str(runs), "--json"]) == 0
    small = json.loads(capsys.readouterr().out)
    wide, figure3 = small["uncarried"], small["figures"]["3"]
    assert {"ed_n4-sparse-w16-s0", "ed_n4-linear-w16-s0"} <= set(wide)
    assert figure3["too_large"] == figure3["missing"] == 6 and figure3["hours_too_large"] == figure3["hours_left"]
    assert all(c["bytes"] > 1024 and c["seconds_alone"] > 0 for c in wide.values())
    assert main(["grid-status", "--params", str(params), "--landed", str(runs)]) == 0
    *_, whole, line = capsys.readouterr().out.splitlines()
    assert line.startswith("Too large to carry") and "ed_n4-linear-w16-s0 (" in line
    assert whole.startswith("Missing and too large to carry")
    assert f"Figure 3: 6 cells, {figure3['hours_left']:.1f} h" in whole


@pytest.mark.slow
def test_a_shard_trains_the_search_frontier_and_lands(tmp_path):
    """A shard on the CPU: the narrowest width first, evaluated, written to one file that lands; the
    next shard goes on with the next width, since the first did not pass. As on a lent GPU machine,
    W&B is off (WANDB_MODE=disabled) and wandb cannot be imported."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    tasks = {"lis": {"sizes": [5], "options": {"number_range": None}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "generate": generate_section(tasks=tasks, train_size=200),
        "train": train_section(datasets=["lis_n5"], widths=[16, 32], max_steps=4, val_every=2, sweep="paper"),
        "evaluate": {"batch_size": 16, "generation_samples": 4, "concurrency": 1}}))
    blocked = tmp_path / "site" / "wandb"  # shadows the installed wandb: importing it fails
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('wandb is not installed here')\n")
    env = {**{k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"},
           "PYTHONPATH": os.pathsep.join([str(blocked.parent), str(root)]), "WANDB_MODE": "disabled"}

    def pipeline(*args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout + result.stderr

    out = pipeline("shard", "--seconds", "100000", "--out", "back")
    first, = (tmp_path / "back").glob("shard-*.json")
    shard = json.loads(first.read_text())
    # w16 fails in 4 steps, so the search moves on to w32 in the same shard, in a second round
    assert [r["run"] for r in shard["runs"]] == ["lis_n5-standard-w16-s0", "lis_n5-standard-w32-s0"]
    assert "shard: 1 cells, 1 at once" in out and "shard: 1 cells more, 1 at once" in out
    assert "cells.json not found: no cell counts as landed" in out  # nothing landed yet, and it says so
    record = shard["runs"][0]
    assert record["device"] == "cpu" and record["curve"] and record["train_seconds"] > 0
    assert shard["gpus"] == 0  # the GPUs of the host, which its GPU-hours count (none on the CPU)
    assert record["command"] == "python -m pipeline shard --seconds 100000 --out back"
    pipeline("land", str(first))
    cells = json.loads((tmp_path / "reports" / "paper" / "cells.json").read_text())["cells"]
    assert [c["run"] for c in cells] == ["lis_n5-standard-w16-s0", "lis_n5-standard-w32-s0"]
    first.unlink()
    out = pipeline("shard", "--seconds", "100000", "--out", "back")
    assert "no missing cell fits" in out and "not found" not in out
    assert not list((tmp_path / "back").glob("shard-*.json"))
    # a named cell trained again, with --fill: the frontier after it is empty
    pipeline("shard", "--seconds", "100000", "--out", "back", "--cells", "lis_n5-standard-w16-s0", "--fill")
    again, = (tmp_path / "back").glob("shard-*.json")
    assert [r["run"] for r in json.loads(again.read_text())["runs"]] == ["lis_n5-standard-w16-s0"]
    assert not (tmp_path / "wandb").exists()


def test_the_frontier_moves_on_past_a_width_that_failed_here_or_landed(tmp_path, params):
    from pipeline.plan import frontier

    cells = tmp_path / "cells.json"
    land([shard(tmp_path, "a.json", [landed("ed_n4-standard-w16-s0", 0.2)])], cells)
    ids = [r.id for r in frontier(params, "3", False, cells)]
    assert ids == ["ed_n4-standard-w32-s0", "ed_n4-sparse-w16-s0", "ed_n4-linear-w16-s0"]
    here = {"ed_n4-standard-w32-s0": landed("ed_n4-standard-w32-s0", 0.95),  # passes: w64 is implied
            "ed_n4-sparse-w16-s0": landed("ed_n4-sparse-w16-s0", 0.3)}
    ids = [r.id for r in frontier(params, "3", False, cells, here=here)]
    assert ids == ["ed_n4-sparse-w32-s0", "ed_n4-linear-w16-s0"]


def test_a_shard_takes_the_cheapest_cells_that_fit():
    from pipeline.execution.capacity import SHARED_GAIN
    from pipeline.params import Run
    from pipeline.plan import SAFETY, fitting

    runs = [Run("ed_n4", "standard", w, 0) for w in (16, 32, 64)]
    prices = {runs[0].id: 30.0, runs[1].id: 10.0, runs[2].id: 100.0}
    assert fitting(runs, prices, 50 / SAFETY) == [runs[1], runs[0]]  # no run that would be cut off
    assert fitting(runs, prices, 5) == []
    # on a GPU, all at once: the priciest run, slowed by sharing, sets the time
    three = 100 * max(1.0, 3 / SHARED_GAIN)
    assert fitting(runs, prices, three / SAFETY, slots=8) == [runs[1], runs[0], runs[2]]
    assert fitting(runs, prices, (three - 1) / SAFETY, slots=8) == [runs[1], runs[0]]
    # on 2 slots, a queue: the w64 run takes the slot the w32 run frees
    two = max(1.0, 2 / SHARED_GAIN)
    assert fitting(runs, prices, (10 + 100) * two / SAFETY, slots=2) == [runs[1], runs[0], runs[2]]
    assert fitting(runs, prices, (10 + 100) * two / SAFETY - 1, slots=2) == [runs[1], runs[0]]


def test_sharing_a_gpu_slows_each_run_past_the_measured_gain():
    from pipeline.execution.capacity import SHARED_GAIN
    from pipeline.params import Run
    from pipeline.plan import wall

    small = [Run("ed_n4", "standard", 32, s) for s in range(8)]
    prices = {r.id: 100.0 for r in small}
    assert wall(small, prices, 1) == 800.0  # one slot: one after another
    assert wall(small, prices, 8) == pytest.approx(100.0 * 8 / SHARED_GAIN)
    assert wall(small, prices, 4) == pytest.approx(2 * 100.0 * 4 / SHARED_GAIN)  # a queue: two runs a slot
    assert wall(small[:1], prices, 8) == 100.0  # alone on the GPU: its price, shared with nothing
    wide = [Run("ed_n4", "standard", 512, s) for s in range(2)]
    assert wall(wide, {r.id: 100.0 for r in wide}, 8) == 200.0  # bound by arithmetic: no gain
    assert wall(wide, {r.id: 100.0 for r in wide}, 16, gpus=2) == 100.0  # one on each of two GPUs


def test_a_shard_stops_training_at_its_deadline_and_keeps_what_finished(tmp_path, monkeypatch):
    """The deadline stops a training still going (as SIGTERM would) and the shard goes on with what
    finished; a stop from outside before the deadline still stops the shard."""
    import signal
    import time

    from pipeline.execution import runtime
    from pipeline.shard import train_until

    monkeypatch.chdir(tmp_path)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    def train(params_path, only):  # the first run finishes at once, the second trains on
        (tmp_path / "runs" / only[0]).mkdir(parents=True)
        (tmp_path / "runs" / only[0] / "train.json").write_text("{}")
        time.sleep(30)

    try:
        began = time.time()
        assert train_until(tmp_path, ["a", "b"], time.time() + 0.5, train) == (["a"], {})
        assert time.time() - began < 10 and not runtime.stopping()

        def one_failed(params_path, only):  # the stage trained the others, then names the one that failed
            raise runtime.Failed("train", {"b": "RunError: boom"}, 2)

        assert train_until(tmp_path, ["a", "b"], time.time() + 60, one_failed) == (["a"], {"b": "RunError: boom"})

        def stopped_from_outside(params_path, only):
            signal.raise_signal(signal.SIGTERM)
            time.sleep(30)

        with pytest.raises(runtime.Interrupted):
            train_until(tmp_path, ["a"], time.time() + 60, stopped_from_outside)
    finally:
        runtime.carry_on()
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])


@pytest.mark.slow
def test_with_wandb_on_and_not_installed_a_shard_or_stage_stops_before_any_work(tmp_path, tiny_paper, monkeypatch,
                                                                                capsys):
    """A lent GPU machine's image has no wandb: without WANDB_MODE=disabled, a shard says so at once
    instead of every run failing in turn, and so does each stage."""
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    tiny_paper.write_text(yaml.safe_dump({**yaml.safe_load(tiny_paper.read_text()), "report": {"thresholds": [0.9]}}))
    for args in (["shard", "--seconds", "1000", "--out", "back"], ["train"], ["evaluate"], ["report"]):
        assert main([*args, "--params", str(tiny_paper)]) == 2, args
        assert capsys.readouterr().err.splitlines() == [
            "error: wandb is not installed: install it (pip install -e .), or set WANDB_MODE=disabled to run "
            "without W&B"], args
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]  # no data, runs, results or shard file
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert main(["shard", "--seconds", "1000", "--out", "back", "--params", str(tiny_paper)]) == 0
    assert len(list((tmp_path / "back").glob("shard-*.json"))) == 1


def test_a_shard_over_several_devices_trains_by_ddp_priced_by_the_measured_speedup(tmp_path, tiny_paper,
                                                                                   monkeypatch, capsys):
    """--devices 2: each run over two processes (here CPU ones), one run at a time, its price divided
    by the speed-up a scaleout file measured: a run too long alone fits; without the file, or with one
    measured over other GPUs, the shard says so before anything."""
    from pipeline import hours
    from pipeline.params import load_section

    runs = [r.id for r in load_section(tiny_paper, "train").runs]
    monkeypatch.setattr(hours, "prices", lambda params, bench=None: dict.fromkeys(runs, 1000.0))
    assert main(["shard", "--params", str(tiny_paper), "--seconds", "900", "--out", "back"]) == 0
    assert "no missing cell fits" in capsys.readouterr().err  # 1000 s a run on one GPU
    measured = tmp_path / "scaleout.json"
    measured.write_text(json.dumps({"gpus": 4, "ddp_speedup": 1.6, "device": "cpu"}))
    for extra, message in (([], "--scaleout FILE is needed"),
                           (["--scaleout", str(measured)], "not the 2 of --devices")):
        assert main(["shard", "--params", str(tiny_paper), "--seconds", "900", "--out", "back", "--devices", "2",
                     *extra]) == 2
        assert message in capsys.readouterr().err
    measured.write_text(json.dumps({"gpus": 2, "ddp_speedup": 1.6, "device": "cpu"}))
    assert main(["shard", "--params", str(tiny_paper), "--seconds", "900", "--out", "back", "--devices", "2",
                 "--scaleout", str(measured), "--cells", "lis_n5-standard-w16-s0"]) == 0
    record, = json.loads(next((tmp_path / "back").glob("shard-*.json")).read_text())["runs"]
    assert record["run"] == "lis_n5-standard-w16-s0" and record["devices"] == 2
    assert json.loads((tmp_path / "runtime" / "train" / f"{record['run']}.json").read_text())["devices"] == 2


def test_a_run_that_fails_with_an_error_costs_the_shard_only_that_run(tmp_path, monkeypatch, tiny_paper):
    """One run's crash (an error, not a divergence): the shard trains, evaluates and writes the others,
    names the crash in its file, and the landed cells' report lists it."""
    from pipeline import shard, training
    from pipeline.cells import cells_report
    from pipeline.grid import landed_file

    fit = training.fit

    def crashing(folder, meta, out, run, *args, **kwargs):
        if run["width"] == 16:
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore lines")
        return fit(folder, meta, out, run, *args, **kwargs)

    monkeypatch.setattr(training, "fit", crashing)
    ids = ["lis_n5-standard-w16-s0", "lis_n5-standard-w32-s0"]
    record = json.loads(shard.run(tiny_paper, 100000.0, tmp_path / "back", cells=ids).read_text())
    assert [r["run"] for r in record["runs"]] == ids[1:]
    assert record["crashed"] == {ids[0]: "RunError: train: run lis_n5-standard-w16-s0 failed: RuntimeError: CUDA "
                                         "error: an illegal memory access was encountered"}
    cells = tmp_path / "cells.json"
    assert land(list((tmp_path / "back").glob("shard-*.json")), cells) == ids[1:]
    records, shards = landed_file(cells)
    text = cells_report(records, {}, shards)
    assert f"| {ids[0]} | RunError: train: run {ids[0]} failed: RuntimeError: CUDA error" in text


@pytest.mark.slow
def test_a_run_that_finished_is_evaluated_at_once_while_the_others_train(tmp_path, monkeypatch, tiny_paper):
    """`AsFinished`: a run whose training finished is evaluated in a process of its own, and the
    shard file is written again with it (`write`); a run still training is left alone."""
    import time

    from pipeline import shard

    done, training = "lis_n5-standard-w16-s0", "lis_n5-standard-w32-s0"
    whole = json.loads(shard.run(tiny_paper, 100000.0, tmp_path / "back", cells=[done]).read_text())
    assert "partial" not in whole and [r["run"] for r in whole["runs"]] == [done]
    result = tmp_path / "results" / f"{done}.json"
    result.unlink()  # as if its training had just finished
    monkeypatch.setattr(shard, "POLL", 0.1)
    written: list[list[str]] = []
    early = shard.AsFinished(tiny_paper, [done, training], "paper", lambda ids: written.append(list(ids)))
    waited = time.time()
    while not written and time.time() - waited < 300:
        time.sleep(0.2)
    early.stop()
    assert written == [[done]] and json.loads(result.read_text())["run"] == done


def test_a_shard_file_written_part_way_lands_and_a_later_copy_replaces_it(tmp_path):
    from pipeline.grid import landed_file

    cells = tmp_path / "cells.json"
    a, b = landed("ed_n4-standard-w16-s0", 0.2), landed("ed_n4-linear-w16-s0", 0.95)

    def copy(folder: str, runs: list[dict], seconds: float, partial: bool) -> Path:
        path = tmp_path / folder / "shard-1.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"runs": runs, "seconds": seconds, **({"partial": True} if partial else {})}))
        return path

    first, later = copy("call1", [a], 600.0, True), copy("call2", [a, b], 1100.0, True)
    snapshot = copy("call3", [a, b], 1350.0, True)  # no new run, but a later carry archive
    snapshot.write_text(json.dumps({**json.loads(snapshot.read_text()), "carried": {"ed_n4-sparse-w16-s0": 900},
                                    "carry": "carry-1.tar.gz"}))
    whole = copy("end", [a, b], 1500.0, False)
    assert land([first], cells) == [a["run"]]
    assert land([first], cells) == [] and land([later], cells) == [b["run"]]
    assert land([first], cells) == []  # an older copy changes nothing
    records, shards = landed_file(cells)
    assert [r["shard_seconds"] for r in records] == [1100.0, 1100.0] and shards["shard-1.json"]["partial"]
    assert land([snapshot], cells) == [] and land([later], cells) == []
    records, shards = landed_file(cells)
    assert shards["shard-1.json"]["carried"] == {"ed_n4-sparse-w16-s0": 900}  # what a lost machine resumes
    assert [r["shard_seconds"] for r in records] == [1350.0, 1350.0]
    assert land([whole], cells) == []  # the whole file: no new run, but its seconds and no longer partial
    records, shards = landed_file(cells)
    assert sorted(r["run"] for r in records) == sorted([a["run"], b["run"]])
    assert [r["shard_seconds"] for r in records] == [1500.0, 1500.0] and "partial" not in shards["shard-1.json"]
    assert land([later], cells) == [] and landed_file(cells) == (records, shards)  # part-way after whole


def test_the_paper_report_draws_landed_cells_and_implied_ones(tmp_path, params, monkeypatch):
    runs = tmp_path / "cells.json"
    land([shard(tmp_path, "a.json", [landed("ed_n4-standard-w32-s0", 0.95), landed("ed_n4-linear-w16-s0", 0.2),
                                     landed("ed_n4-linear-w32-s0", 0.93)])], runs)
    text = yaml.safe_load(params.read_text())
    text["report"] = {"thresholds": [0.9], "budgets": [20000, 60000]}
    params.write_text(yaml.safe_dump(text))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(tmp_path)
    assert main(["paper-report", "--params", str(params), "--landed", str(runs), "--out", str(tmp_path / "paper")]) == 0
    report = (tmp_path / "paper" / "report.md").read_text()
    assert "figures/figure3.png" in report and "runs: 3" in report
    # the minimal-width table from the landed cells: standard passed at w32 with w16 not trained yet;
    # the sparse model, with no cell landed, is in the table as missing
    assert "| standard | <=32 |" in report and "| linear | 32 |" in report and "| sparse | missing |" in report
    assert (tmp_path / "paper" / "figures" / "figure3.png").stat().st_size > 0
    assert "| ed_n4-linear-w32-s0 | finished | 0.930 |" in (tmp_path / "paper" / "cells.md").read_text()
    from pipeline.grid import all_landed, cell_states

    states = cell_states(params, all_landed(runs))
    assert {c for c, s in states.items() if s == "implied"} == {("ed", "standard", 4, 64), ("ed", "linear", 4, 64)}
    assert states[("ed", "sparse", 4, 16)] == "missing"


def test_a_shard_trains_as_many_at_once_and_compiled_as_asked_and_records_it(tmp_path, params, monkeypatch,
                                                                              capsys):
    import sys

    from pipeline import carry, shard
    from pipeline.params import load_section

    seen = {}

    def fake_run(params_path, seconds, out, *args, carry_bytes, bench, speedup):
        seen["train"], seen["command"], seen["carry"] = load_section(params_path, "train"), args[2], carry_bytes
        seen["bench"], seen["speedup"] = bench, speedup

    monkeypatch.setattr(shard, "run", fake_run)
    argv = ["shard", "--params", str(params), "--seconds", "10", "--out", "back", "--concurrency", "3"]
    monkeypatch.setattr(sys, "argv", ["python -m pipeline", *argv])  # what the shard records as its command
    assert main(argv) == 0
    assert seen["train"].concurrency == 3 and seen["command"].endswith("--concurrency 3")
    assert seen["train"].runs == load_section(params, "train").runs  # the same runs, and so the same keys
    assert seen["train"].compile == load_section(params, "train").compile
    assert seen["carry"] == carry.CARRY_BYTES  # what one command of a lent machine returns
    assert main([*argv, "--carry-mb", "160"]) == 0 and seen["carry"] == 160 * 2**20  # a w512 run's archive
    assert seen["bench"] is None and main([*argv, "--bench", "mine.json"]) == 0 and seen["bench"] == [Path("mine.json")]
    assert main([*argv[:-2], "--compile", "inductor-cudagraphs"]) == 0
    # as the parameters have it
    assert seen["train"].compile == "inductor-cudagraphs" and seen["train"].concurrency == load_section(
        params, "train").concurrency
    assert seen["train"].training() == load_section(params, "train").training()  # what decides the weights
    measured = tmp_path / "scaleout.json"  # over several GPUs: one run at a time, priced by the speed-up
    measured.write_text(json.dumps({"gpus": 2, "ddp_speedup": 1.7}))
    assert main([*argv[:-2], "--devices", "2", "--scaleout", str(measured)]) == 0
    assert seen["train"].devices == 2 and seen["train"].concurrency == 1 and seen["speedup"] == 1.7
    assert seen["train"].training() == load_section(params, "train").training()
    assert main(argv) == 0 and seen["speedup"] == 1.0 and seen["train"].devices == 1
    with pytest.raises(SystemExit) as stop:
        main([*argv[:-2], "--compile", "fast"])
    assert stop.value.code == 2 and "invalid choice: 'fast'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["shard", "--params", str(params), "--seconds", "10", "--out", "back", "--concurrency", "0"])
    assert stop.value.code == 2 and "expected a positive integer, got '0'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--carry-mb", "-5"])
    assert stop.value.code == 2 and "--carry-mb: expected a positive integer, got '-5'" in capsys.readouterr().err


def test_a_shards_queue_carried_runs_first_then_named_cells_then_the_frontier():
    from pipeline.params import Run
    from pipeline.plan import queue

    a, b, c, d = (Run("ed_n4", "standard", w, 0) for w in (16, 32, 64, 128))
    assert queue([c], [a, c], [b, a, d], []) == [c, a, b, d]
    assert queue([c], [a], [b, d], [c.id, a.id]) == [b, d]  # a later round: nothing queued twice


def test_the_train_stage_takes_a_shards_runs_in_the_order_given():
    from pipeline.params import Run
    from pipeline.stages.train import shard_of

    runs = [Run("ed_n4", a, 16, 0) for a in ("standard", "sparse", "linear")]
    ids = [r.id for r in runs]
    assert shard_of(runs, None, [ids[2], ids[0], ids[2], "elsewhere"]) == [runs[2], runs[0]]
    assert shard_of(runs, (1, 2)) == [runs[1]] and shard_of(runs, (0, 2), ids[::-1]) == [runs[2], runs[0]]


def test_a_shard_of_unknown_cells_is_refused_before_anything(tmp_path, params, monkeypatch):
    from pipeline import shard

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="shard --cells: 'ed_n9-standard-w16-s0' is not a run of"):
        shard.run(params, 100.0, tmp_path / "back", cells=["ed_n4-standard-w16-s0", "ed_n9-standard-w16-s0"])
    assert not (tmp_path / "back").exists() and not (tmp_path / "data").exists()


def test_the_cells_report_checks_the_search_shows_the_spread_and_the_cost(tmp_path):
    from pipeline.cells import cells_report, sequences_to
    from pipeline.grid import all_landed

    passing = {**landed("ed_n4-standard-w16-s0", 0.95), "compile": "cudagraphs"}  # older records: no compile
    passing["curve"] = [{"step": 10, "sequences": 5120, "acc": 0.5}, {"step": 20, "sequences": 10240, "acc": 0.93},
                        {"step": 30, "sequences": 15360, "acc": 0.995}]
    first = tmp_path / "a.json"
    first.write_text(json.dumps({"runs": [passing, landed("ed_n4-linear-w16-s0", 0.2)], "seconds": 900.0}))
    again = landed("ed_n4-linear-w16-s0", 0.4, seconds=1700.0)
    again["segments"] = [{"steps": 500, "git_rev": "abb", "device": None, "compile": None},  # from an old archive
                         {"steps": 900, "git_rev": "abc", "device": "NVIDIA H100", "compile": "cudagraphs"},
                         {"steps": 1000, "git_rev": "abc", "device": "NVIDIA H100", "compile": "inductor"},
                         {"steps": 1100, "git_rev": "20f2a6131ecb07536fca204bab33ee83d0ce0edf+dirty",  # a full hash
                          "device": "NVIDIA H100", "compile": "inductor"}]
    again["exact_by_length"] = {"length": [20, 26], "exact": [30, 2], "sequences": [40, 60]}
    again["wrong_by_position"] = {"position": [9, 10, 11, 12], "wrong": [0, 5, 30, 30], "graded": [100, 100, 100, 60]}
    second = tmp_path / "b.json"
    second.write_text(json.dumps({"runs": [landed("ed_n4-standard-w32-s0", 0.5), again], "seconds": 1800.0}))
    cells = tmp_path / "cells.json"
    land([first, second], cells)
    records = all_landed(cells)
    assert sequences_to(passing["curve"], 0.9) == 10240 and sequences_to(passing["curve"], 0.999) is None
    text = cells_report(records, {"ed_n4-standard-w16-s0": 360.0, "ed_n4-linear-w16-s0": 720.0})
    row = "| ed_n4-standard-w16-s0 | finished | 0.950 | 0.01M | 0.02M | 0.02M | 1800 | 360 | NVIDIA H100 | cudagraphs |"
    assert row + " abc |" in text and "| NVIDIA H100 | - | abc |" in text  # a record without it: not known
    assert "0 of 1 such cells trained anyway passed" in text  # w32 above the passing w16 did not pass
    assert "| ed_n4-standard-w32-s0 | w16 | 0.500 | no |" in text
    assert "| ed_n4-linear-w16-s0 | 0.200, 0.400 |" in text  # the cell trained twice
    # where a cell off the floor fails (the first record of the cell, at 0.2, has no breakdown)
    assert "| ed_n4-linear-w16-s0 | 0.400 | L=20: 0.75 (40), L=26: 0.03 (60) | 12: 0.50, 11: 0.30, 10: 0.05 |" in text
    assert text.count("| ed_n4-linear-w16-s0 | 0.") == 2  # that row and the spread's
    # carried over four shards: each shard's device, compilation and revision (short) in turn, not the last
    assert ("| ? (to 500), NVIDIA H100 | ? (to 500), cudagraphs (to 900), inductor | abb (to 500), abc (to 1000), "
            "20f2a61+dirty |") in text
    assert "GPU-hours spent: 0.75" in text  # the two shards' wall seconds, not the runs' summed seconds
    assert status_hours(tmp_path, cells) == 0.75


def status_hours(tmp_path: Path, cells: Path) -> float:
    path = tmp_path / "p.yaml"
    tasks = {"ed": {"sizes": [4], "options": {"using": 8}}}
    path.write_text(yaml.safe_dump({"generate": generate_section(tasks=tasks),
                                    "train": train_section(datasets=["ed_n4"], widths=[16, 32])}))
    return status(path, cells)["gpu_hours"]


@pytest.mark.slow
def test_runs_cut_off_at_the_deadline_are_carried_to_the_next_shard(tmp_path, monkeypatch):
    """A shard filled past its time cuts its run off and carries the checkpoint in an archive; while
    it trains, it also packs that archive every CARRY_EVERY seconds and names it in the partial shard
    file. A shard on a bare machine (the same folder, emptied) resumes the run from such a copy taken
    part-way (as if the machine had then been taken back), not from the start."""
    import shutil
    import tarfile

    from pipeline import shard
    from pipeline.grid import parts_of

    copies: list[Path] = []  # what a waiting command brings back part-way: the shard file and the archive
    write = shard.write_shard

    def copied(path, data):
        write(path, data)
        if data.get("partial") and data.get("carry"):
            copies.append(tmp_path / f"copy{len(copies)}")
            copies[-1].mkdir()
            for f in [path, *parts_of(path.parent / data["carry"])]:
                shutil.copy(f, copies[-1])

    monkeypatch.setattr(shard, "write_shard", copied)
    monkeypatch.setattr(shard, "CARRY_EVERY", 2.0)

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "generate": generate_section(tasks={"lis": {"sizes": [5], "options": {"number_range": None}}}, train_size=200),
        "train": train_section(max_steps=100000, val_every=20, val_generation=2, sweep="paper"),
        "evaluate": {"batch_size": 16, "generation_samples": 4, "concurrency": 1}}))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(shard, "STOP_MARGIN", 0.0)
    run_id = "lis_n5-standard-w16-s0"
    work, back = tmp_path / "work", tmp_path / "back"
    work.mkdir()
    monkeypatch.chdir(work)
    record = json.loads(shard.run(params, 15.0, back, fill=True).read_text())
    assert record["runs"] == [] and record["cut_off"] == [run_id] and record["carried"][run_id] > 0
    archive = back / record["carry"]
    with tarfile.open(archive) as tar:
        assert set(tar.getnames()) - {f"{run_id}/checkpoints/best.ckpt"} == {
            "carry.json", f"{run_id}/checkpoints/last.ckpt", f"{run_id}/resume.json"}

    assert copies, "no carry archive part-way"
    midway = json.loads(next(copies[-1].glob("shard-*.json")).read_text())
    assert midway["partial"] and 0 < midway["carried"][run_id] <= record["carried"][run_id]

    shutil.rmtree(work)  # a bare machine: no data, no runs; only the repository, where the copy landed
    work.mkdir()
    monkeypatch.chdir(work)
    land([next(copies[-1].glob("shard-*.json"))], Path("reports/paper/cells.json"))
    again = json.loads(shard.run(params, 15.0, tmp_path / "back2", fill=True).read_text())  # resumes what landed
    resumed = json.loads((work / "runs" / run_id / "resume.json").read_text())
    assert len(resumed["segments"]) == 2 and again["carried"][run_id] > midway["carried"][run_id]
    # the archive names both shards' parts: where each ended, its revision, device and compilation
    with tarfile.open(tmp_path / "back2" / again["carry"]) as tar:
        made = json.load(tar.extractfile("carry.json"))[run_id]["segments"]
    assert [s["steps"] for s in made] == [midway["carried"][run_id], again["carried"][run_id]]
    assert all(s["device"] == "cpu" and s["compile"] == "none" and s["git_rev"] for s in made)


def test_a_carried_run_lands_with_every_shard_it_trained_in(monkeypatch):
    """The record's device, revision and compilation are its last shard's; a run carried in names
    the shards before too, each with the step its part ended at, and the record stays a valid cell."""
    from pipeline import shard
    from pipeline.records import EvaluateRuntime, Landed, Results, TrainRuntime, check

    run = "ed_n4-linear-w16-s0"
    results = {k: v for k, v in landed(run, 0.9).items() if k not in (
        "train_seconds", "eval_seconds", "peak_gpu_gib", "device", "git_rev", "versions", "command")}
    files = {Results: results, EvaluateRuntime: {"eval_seconds": 4.0},
             TrainRuntime: {"train_seconds": 60.0, "peak_gpu_gib": 2.0, "device": "NVIDIA H200", "git_rev": "abd",
                            "versions": {"torch": "2.11"}, "compile": "inductor-cudagraphs"}}
    monkeypatch.setattr(shard, "load", lambda path, model: files[model])
    earlier = [{"steps": 40, "git_rev": "abc", "device": "NVIDIA H100", "compile": "cudagraphs"}]
    record = shard.landing_record(run, "abd", "python -m pipeline shard", earlier)
    assert record["segments"] == [*earlier, {"steps": 100, "git_rev": "abd", "device": "NVIDIA H200",
                                             "compile": "inductor-cudagraphs"}]
    assert check(record, Landed, "cells[0]") is record
    assert "segments" not in shard.landing_record(run, "abd", "python -m pipeline shard")  # one shard: no list


def test_a_carry_archive_with_anything_else_is_refused(tmp_path):
    import io
    import tarfile

    from pipeline.carry import unpack
    from pipeline.params import Run

    known = {"lis_n5-standard-w16-s0": Run("lis_n5", "standard", 16, 0)}
    archive = tmp_path / "carry.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, blob in (("carry.json", b'{"lis_n5-standard-w16-s0": {"steps": 5}}'),
                           ("lis_n5-standard-w16-s0/../../evil.py", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    with pytest.raises(ValueError, match="evil.py' is not a carried run of this profile"):
        unpack(archive, known, tmp_path / "runs")
    listed = tmp_path / "listed.tar.gz"
    with tarfile.open(listed, "w:gz") as tar:
        info = tarfile.TarInfo("carry.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"[]"))
    with pytest.raises(ValueError, match="carry.json is not a mapping of run ids"):
        unpack(listed, known, tmp_path / "runs")
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="junk.tar.gz: not a carry archive"):
        unpack(tmp_path / "junk.tar.gz", known, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_a_carry_archive_in_parts_comes_back_whole_with_the_best_checkpoint_reduced_to_its_weights(
        tmp_path, monkeypatch):
    """Checkpoints larger than one returned file travel in parts, each at most CARRY_PART; the best
    checkpoint travels without its optimiser state; a part missing is refused in one line."""
    import torch

    from pipeline import carry
    from pipeline.grid import parts_of
    from pipeline.params import Run

    ids = [f"lis_n5-standard-w{w}-s0" for w in (16, 32)]
    known = {i: Run("lis_n5", "standard", w, 0) for i, w in zip(ids, (16, 32))}
    runs = tmp_path / "runs"
    for i in ids:
        (runs / i / "checkpoints").mkdir(parents=True)
        (runs / i / "resume.json").write_text(json.dumps({"key": f"key-{i}", "segments": [1]}))
        state = {"state_dict": {"w": torch.randn(300, 300)}, "global_step": 7, "epoch": 0}
        torch.save({**state, "optimizer_states": [{"m": torch.randn(300, 300)}]}, runs / i / "checkpoints/last.ckpt")
        torch.save({**state, "optimizer_states": [{"m": torch.randn(300, 300)}]}, runs / i / "checkpoints/best.ckpt")
    monkeypatch.setattr(carry, "CARRY_PART", 300_000)  # about 0.7 MB of random floats: three parts
    archive = tmp_path / "back" / "carry-1.tar.gz"
    archive.parent.mkdir()
    kept, parts = carry.pack(ids, runs, archive, "abc")
    assert kept == {i: 7 for i in ids} and parts == len(parts_of(archive)) >= 3
    assert all(f.stat().st_size <= 300_000 for f in parts_of(archive))

    bare = tmp_path / "bare"  # an archive that recorded no segments: one, with the revision that packed it
    assert carry.unpack(archive, known, bare) == {
        i: {"steps": 7, "segments": [{"steps": 7, "git_rev": "abc", "device": None, "compile": None}]} for i in ids}
    # resumed from the landed archive: the runs landed since are left out, not trained again
    assert list(carry.unpack(archive, known, tmp_path / "some", only={ids[1]})) == [ids[1]]
    assert not (tmp_path / "some" / ids[0]).exists()
    for i in ids:
        assert (bare / i / "checkpoints/last.ckpt").read_bytes() == (runs / i / "checkpoints/last.ckpt").read_bytes()
        best = torch.load(bare / i / "checkpoints/best.ckpt", weights_only=False)
        original = torch.load(runs / i / "checkpoints/best.ckpt", weights_only=False)
        assert "optimizer_states" not in best and best["global_step"] == 7
        assert torch.equal(best["state_dict"]["w"], original["state_dict"]["w"])

    # a second shard on the machine that packed it: its runs are there already, and count as carried
    # where their last checkpoint is the archive's; one trained on since is left as it is, uncounted
    last = runs / ids[1] / "checkpoints/last.ckpt"
    packed = last.read_bytes()
    torch.save({"state_dict": {}, "global_step": 9}, last)
    assert carry.unpack(archive, known, runs) == {
        ids[0]: {"steps": 7, "segments": [{"steps": 7, "git_rev": "abc", "device": None, "compile": None}]}}
    assert torch.load(last, weights_only=False)["global_step"] == 9
    last.write_bytes(packed)

    parts_of(archive)[-1].unlink()
    with pytest.raises(ValueError, match="not a carry archive, or a part of it is missing"):
        carry.unpack(archive, known, tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()

    # an archive limited to about one run's checkpoints (1.1 MB each) carries the first run alone
    assert carry.pack(ids, runs, tmp_path / "small.tar.gz", "abc", limit=1_500_000)[0] == {ids[0]: 7}

    # packed again under the same name (a later snapshot), smaller: the earlier archive's parts go
    monkeypatch.setattr(carry, "CARRY_PART", 10**7)
    assert carry.pack(ids[:1], runs, archive, "abc") == ({ids[0]: 7}, 1) and parts_of(archive) == [archive]
    assert carry.unpack(archive, known, tmp_path / "again")[ids[0]]["steps"] == 7
    # the shards a run trained in travel with it; a manifest whose segments are not what pack writes is refused
    made = [{"steps": 3, "git_rev": "abb", "device": "NVIDIA H200", "compile": "cudagraphs"},
            {"steps": 7, "git_rev": "abc", "device": "NVIDIA H100", "compile": "inductor-cudagraphs"}]
    carry.pack(ids[:1], runs, archive, "abc", segments=lambda i, n: made if i == ids[0] and n == 7 else [])
    assert carry.unpack(archive, known, tmp_path / "more") == {ids[0]: {"steps": 7, "segments": made}}
    carry.pack(ids[:1], runs, archive, "abc", segments=lambda i, n: [{"steps": "7"}])
    with pytest.raises(ValueError, match="is not a carried run of this profile"):
        carry.unpack(archive, known, tmp_path / "bad")
    assert carry.pack(ids, tmp_path / "none", archive, "abc") == ({}, 0) and not archive.exists()
    assert not list(archive.parent.glob(".*"))  # no temporary part left behind


def test_fill_queues_no_more_runs_than_its_archive_could_carry_at_the_deadline():
    from pipeline.carry import CARRY_BYTES
    from pipeline.params import Run
    from pipeline.plan import filled

    runs = [Run("ed_n6", a, w, 0) for w in (512, 256, 128) for a in ("standard", "linear")]
    sizes = {r.id: {512: 145, 256: 37, 128: 10}[r.width] * 2**20 for r in runs}
    chosen = filled(runs, sizes, 8)
    # the w512 runs are passed over (one alone is past the archive), one w256 fits, then one w128
    assert [r.id for r in chosen] == ["ed_n6-standard-w256-s0", "ed_n6-standard-w128-s0"]
    assert sum(sizes[r.id] for r in chosen) <= CARRY_BYTES
    # on 2 slots no more than 2 are in flight when the deadline comes: not both w256, but both w128
    assert [r.id for r in filled(runs, sizes, 2)] == [
        "ed_n6-standard-w256-s0", "ed_n6-standard-w128-s0", "ed_n6-linear-w128-s0"]
    assert filled(runs[4:], sizes, 1) == runs[4:]  # a queue, one at a time
    # a larger archive (--carry-mb 300, its parts brought back over several commands) takes both w512
    assert [r.id for r in filled(runs, sizes, 8, 300 * 2**20)] == [
        "ed_n6-standard-w512-s0", "ed_n6-linear-w512-s0", "ed_n6-standard-w128-s0"]


def test_fill_puts_a_named_cell_too_large_to_carry_first_only_if_it_will_finish():
    from pipeline.params import Run
    from pipeline.plan import SAFETY, ahead, filled

    wide, second = Run("ed_n6", "linear", 512, 0), Run("ed_n6", "standard", 512, 0)
    queue = [Run("ed_n12", a, 32, 0) for a in ("standard", "sparse", "linear")]
    prices = {wide.id: 300.0, second.id: 900.0, **{r.id: 2000.0 for r in queue}}
    sizes = {wide.id: 145 * 2**20, second.id: 145 * 2**20, **{r.id: 2**20 for r in queue}}
    assert filled([wide, *queue], sizes, 4) == queue  # the archive cannot carry it: passed over
    # beside 3 runs of the queue on 4 slots, not all launch-bound: each takes 4 x its price
    assert ahead([second, wide], queue, prices, 4 * 300 / SAFETY, 4) == [wide]
    assert ahead([second, wide], queue, prices, 4 * 300 / SAFETY - 1, 4) == []
    assert ahead([wide], queue, prices, 300 / SAFETY, 1) == [wide]  # one slot: it runs alone
    assert ahead([second, wide], [], prices, 2 * 900 / SAFETY, 4) == [wide, second]


def test_fill_lets_a_frontier_cell_too_large_to_carry_go_first_as_it_does_a_named_one():
    from pipeline.params import Run
    from pipeline.plan import SAFETY, ahead, filled, passed_over

    wide, w256, other = Run("ed_n6", "sparse", 512, 0), Run("ed_n16", "sparse", 256, 0), Run("ed_n12", "sparse", 256, 0)
    small = [Run("ed_n20", a, 32, 0) for a in ("standard", "linear")]
    sizes = {wide.id: 145 * 2**20, w256.id: 37 * 2**20, other.id: 37 * 2**20, **{r.id: 2**20 for r in small}}
    candidates = [*small, wide, other, w256]
    todo = filled(candidates, sizes, 4)
    assert todo == [*small, other]  # the w512 alone is past the archive; a second w256 past it beside the first
    # of those passed over, only the one no later round could carry may go ahead of the queue: the
    # second w256 waits for a round whose runs in flight leave it room
    assert passed_over(candidates, todo, [], sizes) == [wide]
    assert passed_over(candidates, todo, [w256.id], sizes) == [wide, w256]  # a named cell, as before
    prices = {wide.id: 500.0, w256.id: 900.0, other.id: 900.0, **{r.id: 800.0 for r in small}}
    # beside 3 runs of the queue on 4 slots, not all launch-bound: 4 x its price
    assert ahead([wide], todo, prices, 4 * 500 / SAFETY, 4) == [wide]
    assert ahead([wide], todo, prices, 4 * 500 / SAFETY - 1, 4) == []


def test_a_shard_whose_runs_were_all_carried_on_still_counts_its_gpu_time(tmp_path, params):
    from pipeline.cells import cells_report
    from pipeline.grid import cells_training, landed_file

    cells = tmp_path / "cells.json"

    def report() -> str:
        records, shards = landed_file(cells)
        return cells_report(records, {}, shards)

    carried = tmp_path / "shard-1.json"
    carried.write_text(json.dumps({"runs": [], "device": "NVIDIA H200", "seconds": 1500.0,
                                   "carried": {"ed_n4-standard-w16-s0": 900}, "carry": "carry-1.tar.gz"}))
    (tmp_path / "carry-1.tar.gz").write_bytes(b"checkpoints")
    finished = tmp_path / "shard-2.json"
    finished.write_text(json.dumps({"runs": [landed("ed_n4-standard-w16-s0", 0.95)], "device": "NVIDIA H200",
                                    "seconds": 600.0, "carried": {}}))
    assert land([carried], cells) == []
    kept = tmp_path / "carry" / "carry-1.tar.gz"  # landed beside the cells: what the next shard resumes
    assert status(params, cells)["carried"] == {str(kept): {"ed_n4-standard-w16-s0": 900}}
    assert kept.read_bytes() == b"checkpoints"
    assert "| ed_n4-standard-w16-s0 | 900 | carry-1.tar.gz |" in report()
    assert "still in progress (carried): 0.42" in report()
    assert cells_training(params, *landed_file(cells), cells) == {("ed", "standard", 4, 16): "0.9k of\n0.02k steps"}
    assert land([finished], cells) == ["ed_n4-standard-w16-s0"]
    assert status(params, cells)["carried"] == {}  # landed since: no longer in progress
    assert not kept.exists()  # nothing left to resume from it
    assert cells_training(params, *landed_file(cells), cells) == {}
    assert "still in progress (carried): 0.00" in report()
    assert land([carried, finished], cells) == []  # landing again changes nothing
    assert status(params, cells)["gpu_hours"] == round(2100 / 3600, 3)
    assert json.loads(cells.read_text())["shards"]["shard-1.json"]["carried"] == {"ed_n4-standard-w16-s0": 900}
    # a shard on a host of 4 GPUs took 4 GPU-seconds a second, whether or not it landed a cell
    wide, carried_wide = tmp_path / "shard-3.json", tmp_path / "shard-4.json"
    wide.write_text(json.dumps({"runs": [landed("ed_n4-linear-w16-s0", 0.2)], "device": "NVIDIA H100", "gpus": 4,
                                "seconds": 900.0, "carried": {}}))
    carried_wide.write_text(json.dumps({"runs": [], "device": "NVIDIA H100", "gpus": 4, "seconds": 450.0,
                                        "carried": {"ed_n4-sparse-w16-s0": 10}, "carry": "carry-4.tar.gz"}))
    (tmp_path / "carry-4.tar.gz").write_bytes(b"checkpoints")
    assert land([wide, carried_wide], cells) == ["ed_n4-linear-w16-s0"]
    assert status(params, cells)["gpu_hours"] == round((2100 + 4 * 900 + 4 * 450) / 3600, 3)
    bad = tmp_path / "shard-5.json"
    bad.write_text(json.dumps({"runs": [], "device": "NVIDIA H100", "gpus": "four", "seconds": 1.0}))
    with pytest.raises(CorruptFile, match="shard-5.json: gpus: not a count of GPUs, got 'four'"):
        land([bad], cells)


def test_land_keeps_the_carry_archive_in_the_repository_and_says_when_one_did_not_come_back(tmp_path, params, capsys):
    """The repository is all that lasts from one lent machine to the next: `land` copies the archive of the
    runs in progress (every part) beside the cells, and the previous one goes once the new one is there.
    An archive that did not come back is said in one line, its runs shown as restarting, and the
    previous archive kept; a shard of the frontier resumes from the landed archive by default."""
    from pipeline import shard as shard_module
    from pipeline.grid import table

    cells, folder = tmp_path / "paper" / "cells.json", tmp_path / "paper" / "carry"

    def lease(name: str, carried: dict, parts: int, came_back: int) -> Path:
        back = tmp_path / name
        back.mkdir()
        path = back / f"shard-{name}.json"
        path.write_text(json.dumps({"runs": [], "device": "NVIDIA H200", "seconds": 1500.0, "carried": carried,
                                    "carry": f"carry-{name}.tar.gz", "carry_parts": parts}))
        for i in range(came_back):
            (back / (f"carry-{name}.tar.gz" + (f".{i}" if i else ""))).write_bytes(f"{name} {i}".encode())
        return path

    assert land([lease("1", {"ed_n4-standard-w16-s0": 900}, 2, 2)], cells) == []
    assert sorted(p.name for p in folder.iterdir()) == ["carry-1.tar.gz", "carry-1.tar.gz.1"]
    assert shard_module.resumable(cells) == (folder / "carry-1.tar.gz", {"ed_n4-standard-w16-s0"})
    assert "1 run in progress resumed from" in capsys.readouterr().err

    # the next lease's archive came back with one of its two parts: not landed, the earlier one kept
    assert land([lease("2", {"ed_n4-standard-w16-s0": 1800, "ed_n4-linear-w16-s0": 300}, 2, 1)], cells) == []
    err = capsys.readouterr().err
    assert "carry-2.tar.gz did not come back whole" in err and "2 runs in progress" in err and "restart" in err
    assert sorted(p.name for p in folder.iterdir()) == ["carry-1.tar.gz", "carry-1.tar.gz.1"]
    state = status(params, cells)
    assert state["carried"] == {} and state["lost"] == {"carry-2.tar.gz": {"ed_n4-linear-w16-s0": 300,
                                                                          "ed_n4-standard-w16-s0": 1800}}
    assert "Carried in carry-2.tar.gz, which was not landed: these restart" in table(state)
    assert shard_module.resumable(cells) is None  # not the older archive: its runs went on in lease 2

    assert land([lease("3", {"ed_n4-linear-w16-s0": 600}, 1, 1)], cells) == []
    assert [p.name for p in folder.iterdir()] == ["carry-3.tar.gz"]  # the earlier ones removed
    assert shard_module.resumable(cells) == (folder / "carry-3.tar.gz", {"ed_n4-linear-w16-s0"})
