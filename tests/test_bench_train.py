"""The training-throughput benchmark runs end to end on the CPU and writes the fields the issue names
(the GPU numbers come from `python -m pipeline bench-train` on the H200)."""

from __future__ import annotations

import json

import torch

from pipeline.bench import train as bench_train
from pipeline.bench.baseline import BaselineGPT


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
    # every registered type, plus the sparse paths it benchmarks on its own
    assert {r["attention"] for r in saved["records"]} == {"standard", "sparse", "linear", "sparse_blocks",
                                                          "sparse_dense"}
    for r in saved["records"]:
        assert r["tokens_per_s"] > 0 and r["baseline_tokens_per_s"] > 0 and r["L"] == 44
        assert r["ratio"] == r["tokens_per_s"] / r["baseline_tokens_per_s"] and r["mfu"] is None
