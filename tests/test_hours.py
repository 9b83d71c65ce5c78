"""predict-hours: each run of a profile costed at its nearest measured throughput, to the cap."""

from __future__ import annotations

import json

import pytest

from pipeline import hours
from pipeline.__main__ import main
from pipeline.generation import tasks_of
from pipeline.params import load_section


def bench_file(tmp_path, records):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"records": records}))
    return path


def record(attention, width, length, tokens_per_s, startup=0.0):
    return {"attention": attention, "width": width, "L": length, "tokens_per_s": tokens_per_s,
            "startup_seconds": startup}


def test_every_run_is_priced_at_its_nearest_record(tmp_path):
    # params.yaml: 4 datasets x 3 attentions x widths 32, 64; max_steps 1000 x batch 64
    records = hours.load_records([bench_file(tmp_path, [
        record("standard", 32, 100, 1e6, startup=5.0), record("standard", 256, 100, 2e6),
        record("sparse", 64, 100, 4e6), record("linear", 1024, 100, 8e5),
        record("linear", 1024, 100, 4e5),  # the slower duplicate is dropped
        {"attention": "sparse", "width": 32, "L": 100, "error": "InductorError: ..."}])])  # a failed one too
    prediction = hours.predict("params.yaml", records)
    lengths = {d.name: task.max_len for d, task in tasks_of(load_section("params.yaml", "generate"))}
    cap = 1000 * 64
    assert max(lengths.values()) < 99  # shorter than the records: each step priced as the records' (99 positions)
    tokens = len(lengths) * 99 * cap  # per attention and width
    expected = {32: tokens / 1e6 + 4 * 5.0 + tokens / 4e6 + tokens / 8e5,
                64: tokens / 1e6 + 4 * 5.0 + tokens / 4e6 + tokens / 8e5}  # w64 standard: w32 is nearer than w256
    priced = prediction["caps"][str(cap)]
    assert priced["runs"] == 24
    for width, seconds in expected.items():
        assert priced["hours_by_width"][width] == pytest.approx(seconds / 3600)
    assert priced["hours"] == pytest.approx(sum(expected.values()) / 3600)
    assert priced["figure_3_hours"] == 0  # no ED dataset in the default profile
    doubled = hours.predict("params.yaml", records, caps=[2 * cap])["caps"][str(2 * cap)]
    assert doubled["hours"] == pytest.approx((2 * sum(expected.values()) - 8 * 5.0) / 3600)


def test_a_run_is_priced_at_its_records_step_when_shorter_and_at_its_tokens_when_longer(tmp_path):
    records = [record("standard", 32, 201, 1e6)]  # 200 positions a sequence
    cap = 1000 * 64
    for n, positions in ((20, 200), (200, 404)):  # LIS n=20: 44 positions; n=200: 404
        priced = predict_one_dataset(tmp_path, records, n)["caps"][str(cap)]
        assert priced["runs"] == 6  # 3 types (sparse and linear at the standard model's record) x 2 widths
        assert priced["hours"] == pytest.approx(6 * cap * positions / 1e6 / 3600)


def predict_one_dataset(tmp_path, records, n):
    """predict-hours for params.yaml with LIS of size n as its only dataset."""
    import yaml

    params = yaml.safe_load(open("params.yaml"))
    params["generate"]["tasks"] = {"lis": {"sizes": [n], "options": {"number_range": None}}}
    params["train"]["datasets"] = [f"lis_n{n}"]
    path = tmp_path / f"lis_n{n}.yaml"
    path.write_text(yaml.safe_dump(params))
    return hours.predict(path, hours.load_records([bench_file(tmp_path, records)]))


def test_a_missing_benchmark_file_is_one_line_error(tmp_path, capsys):
    assert main(["predict-hours", "--bench", str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "none.json" in err and "\n" not in err


def test_the_committed_profiles_can_be_priced(tmp_path):
    out = tmp_path / "hours.json"
    assert main(["predict-hours", "--profile", "paper", "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["caps"]["8192000"]["runs"] == 288 and saved["caps"]["8192000"]["figure_3_runs"] == 72
