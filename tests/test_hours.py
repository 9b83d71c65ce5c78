"""predict-hours: each run of a profile costed at its nearest measured throughput, to the cap."""

from __future__ import annotations

import json

import pytest
import yaml
from settings import generate_section, train_section

from pipeline import hours
from pipeline.__main__ import main
from pipeline.generation import tasks_of
from pipeline.params import load_section

# the sweep priced here: 3 attention types x widths 32, 64 per dataset; max_steps 1000 x batch 64
SWEEP = {"attentions": ["standard", "sparse", "linear"], "widths": [32, 64], "max_steps": 1000, "batch_size": 64}


def bench_file(tmp_path, records):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"records": records}))
    return path


def record(attention, width, length, tokens_per_s, startup=0.0):
    return {"attention": attention, "width": width, "L": length, "tokens_per_s": tokens_per_s,
            "startup_seconds": startup}


def sweep_params(path, tasks: dict, datasets: list[str]):
    """A parameters file at `path`: SWEEP over `datasets`, generated from `tasks`."""
    path.write_text(yaml.safe_dump({"generate": generate_section(tasks=tasks),
                                    "train": train_section(datasets=datasets, **SWEEP)}))
    return path


def test_every_run_is_priced_at_its_nearest_record(tmp_path):
    tasks = {"arithmetic": {"sizes": [2, 3], "options": {"p": 11, "under": True}},
             "lis": {"sizes": [3, 5], "options": {"number_range": None}}}
    params = sweep_params(tmp_path / "params.yaml", tasks, ["arithmetic_n2", "arithmetic_n3", "lis_n3", "lis_n5"])
    records = hours.load_records([bench_file(tmp_path, [
        record("standard", 32, 100, 1e6, startup=5.0), record("standard", 256, 100, 2e6),
        record("sparse", 64, 100, 4e6), record("linear", 1024, 100, 8e5),
        record("linear", 1024, 100, 4e5),  # the slower duplicate is dropped
        {"attention": "sparse", "width": 32, "L": 100, "error": "InductorError: ..."}])])  # a failed one too
    prediction = hours.predict(params, records)
    lengths = {d.name: task.max_len for d, task in tasks_of(load_section(params, "generate"))}
    cap = SWEEP["max_steps"] * SWEEP["batch_size"]
    assert max(lengths.values()) < 99  # shorter than the records: each step priced as the records' (99 positions)
    tokens = len(lengths) * 99 * cap  # per attention and width
    startup = len(lengths) * 5.0  # per width: the standard runs' record starts up in 5 s, once a run
    expected = {32: tokens / 1e6 + startup + tokens / 4e6 + tokens / 8e5,
                64: tokens / 1e6 + startup + tokens / 4e6 + tokens / 8e5}  # w64 standard: w32 is nearer than w256
    priced = prediction["caps"][str(cap)]
    assert priced["runs"] == len(lengths) * len(SWEEP["attentions"]) * len(SWEEP["widths"])
    for width, seconds in expected.items():
        assert priced["hours_by_width"][width] == pytest.approx(seconds / 3600)
    assert priced["hours"] == pytest.approx(sum(expected.values()) / 3600)
    assert priced["figure_3_hours"] == 0  # no ED dataset
    doubled = hours.predict(params, records, caps=[2 * cap])["caps"][str(2 * cap)]
    assert doubled["hours"] == pytest.approx((2 * sum(expected.values()) - 2 * startup) / 3600)  # start-up once


def test_a_run_is_priced_at_its_records_step_when_shorter_and_at_its_tokens_when_longer(tmp_path):
    records = [record("standard", 32, 201, 1e6)]  # 200 positions a sequence
    cap = SWEEP["max_steps"] * SWEEP["batch_size"]
    for n, positions in ((20, 200), (200, 404)):  # LIS n=20: 44 positions; n=200: 404
        priced = predict_one_dataset(tmp_path, records, n)["caps"][str(cap)]
        assert priced["runs"] == 6  # 3 types (sparse and linear at the standard model's record) x 2 widths
        assert priced["hours"] == pytest.approx(6 * cap * positions / 1e6 / 3600)


def predict_one_dataset(tmp_path, records, n):
    """predict-hours for SWEEP with LIS of size n as its only dataset."""
    path = sweep_params(tmp_path / f"lis_n{n}.yaml", {"lis": {"sizes": [n], "options": {"number_range": None}}},
                        [f"lis_n{n}"])
    return hours.predict(path, hours.load_records([bench_file(tmp_path, records)]))


def test_a_missing_benchmark_file_is_one_line_error(tmp_path, capsys):
    assert main(["predict-hours", "--bench", str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "none.json" in err and "\n" not in err


def test_the_committed_profiles_can_be_priced(tmp_path):
    out = tmp_path / "hours.json"
    assert main(["predict-hours", "--profile", "paper", "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    cap = saved["caps"][str(64000 * 512)]  # the paper profile's cap
    assert cap["runs"] == 288 and cap["figure_3_runs"] == 72


def test_grid_status_prices_with_the_benchmark_files_named(tmp_path, capsys, monkeypatch):
    """`--bench` (grid-status and shard alike): a record nearer in length prices a short run anew."""
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the committed profile and benchmark file
    assert main(["grid-status", "--profile", "paper", "--landed", str(tmp_path / "none.json"), "--json"]) == 0
    before = json.loads(capsys.readouterr().out)["figures"]["3"]["hours_left"]
    # every ED n=6 run (73 positions) of every width measured at 1e9 tokens/s: far cheaper than before
    fast = bench_file(tmp_path, [record(a, w, 74, 1e9) for a in ("standard", "sparse", "linear")
                                 for w in (32, 64, 128, 256, 512, 1024)])
    assert main(["grid-status", "--profile", "paper", "--landed", str(tmp_path / "none.json"), "--json",
                 "--bench", "benchmarks/results/throughput.json", str(fast)]) == 0
    after = json.loads(capsys.readouterr().out)["figures"]["3"]["hours_left"]
    n6 = 18 * 64000 * 512 * 73 / 1e9 / 3600  # what the 18 ED n=6 runs cost now
    assert after < before - 1 and after > n6
