"""A new attention type is one module: this file defines and registers one (causal mean of the
values, a toy) and runs it through the train, evaluate and report stages, FLOPs included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from settings import train_section

from pipeline.attention import ATTENTION, Attention, make_attention, register
from pipeline.cost import flops_per_sequence
from pipeline.generation import write_dataset
from pipeline.tasks import make_task


class MeanAttention(Attention):
    """Every position takes the mean of the values up to it (no queries or keys at all)."""

    name = "mean"
    label = "Mean-of-prefix attention"

    def __init__(self, max_len: int, scale: float = 1.0) -> None:
        super().__init__(max_len)
        self.scale = scale

    def options(self) -> dict:
        return {"scale": self.scale}

    def mixing_flops(self, length: int, width: int, heads: int) -> int:
        return 2 * length * width  # a running sum and a division per position and channel

    def forward(self, q, k, v):
        count = torch.arange(1, v.shape[2] + 1, device=v.device, dtype=v.dtype)[:, None]
        return self.scale * v.cumsum(2) / count

    def reference(self, q, k, v):
        length = v.shape[2]
        weights = torch.ones(length, length, dtype=v.dtype, device=v.device).tril()
        return self.scale * (weights / weights.sum(-1, keepdim=True)) @ v

    def init_state(self, batch, heads, head_dim, device, dtype):
        return (torch.zeros(batch, heads, 1, head_dim, device=device, dtype=dtype), 0)

    def step(self, q, k, v, state):
        total, count = state
        total, count = total + v, count + 1
        return self.scale * total / count, (total, count)


@pytest.fixture
def mean_attention():
    register(MeanAttention)
    yield
    ATTENTION.pop("mean")


def test_the_toy_type_is_correct_against_its_reference(mean_attention):
    att = make_attention("mean", 32, scale=0.5)
    q, k, v = (torch.randn(2, 4, 20, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    torch.testing.assert_close(att(q, k, v), att.reference(q, k, v))
    state = att.init_state(2, 4, 8, "cpu", torch.float64)
    for t in range(20):
        out, state = att.step(q[:, :, t : t + 1], k[:, :, t : t + 1], v[:, :, t : t + 1], state)
        torch.testing.assert_close(out, att.reference(q, k, v)[:, :, t : t + 1])


def test_a_registered_type_runs_through_train_evaluate_and_report(mean_attention, tmp_path, monkeypatch):
    from pipeline.stages import evaluate, report, train

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    data = tmp_path / "data" / "datasets"
    write_dataset(make_task("lis", 5), {"train": 200, "val": 16, "test": 16}, 0, data / "lis_n5")
    params = {
        "train": train_section(sweep="toy", attentions=["standard", "mean"], dropout=0.0,
                               attention_options={"mean": {"scale": 0.5}}, warmup_steps=2, decay_fraction=0.7,
                               max_steps=6, val_every=3, stop_at=1.0, val_generation=8),
        "evaluate": {"batch_size": 16, "generation_samples": 8, "concurrency": 1},
        "report": {"thresholds": [0.9]},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    train.run(Path("params.yaml"), Path("data/datasets"), Path("runs"), Path("runtime/train"))
    evaluate.run(Path("params.yaml"), Path("data/datasets"), Path("runs"), Path("results"), Path("runtime/evaluate"),
                 Path("metrics.json"))
    report.run(Path("params.yaml"), Path("results"), Path("runtime/train"), Path("reports"))
    result = json.loads((tmp_path / "results" / "lis_n5-mean-w16-s0.json").read_text())
    expected = flops_per_sequence(result["seq_len"], 16, 2, 4, _vocab(tmp_path), "mean", scale=0.5)
    assert result["flops_per_sequence"] == expected["total"] and expected["attention"] == 2 * 2 * result["seq_len"] * 16
    assert result["attention_label"] == "Mean-of-prefix attention" and result["status"] == "finished"
    text = (tmp_path / "reports" / "report.md").read_text()
    assert "mean (Mean-of-prefix attention)" in text and "| mean |" in text
    assert text.index("| standard |") < text.index("| mean |")  # rows in the registry's order
    assert set(json.loads((tmp_path / "metrics.json").read_text())["graded_acc"]) == {"standard", "mean"}


def _vocab(tmp_path: Path) -> int:
    return len(json.loads((tmp_path / "data" / "datasets" / "lis_n5" / "meta.json").read_text())["vocab"])


def test_the_attention_benchmark_times_every_registered_type(mean_attention, tmp_path):
    from benchmarks import attention

    result = attention.run(tmp_path / "bench.json", "cpu", [16, 32], 64, repeat=1, git="test")
    timed = {r["attention"] for r in result["records"]}
    assert timed == {"standard", "linear", "sparse", "mean"}
