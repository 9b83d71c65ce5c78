"""Scale-out. One training over several processes through Lightning's DDP strategy (`train.devices`),
on the CPU with two gloo processes that torchrun starts, against the same run in one process; the
sharding of a global batch that makes the two the same training; and how a sweep's pool processes
are spread over the GPUs of a host."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.generation import write_dataset
from pipeline.grading import chain_targets
from pipeline.params import ParamError, TrainParams
from pipeline.stages import train as train_stage
from pipeline.tasks import make_task
from pipeline.training import Split, TrainStream, chain_loss

sys.path.insert(0, str(Path(__file__).parent))
from settings import train_section  # noqa: E402
from wandb_records import summary_of  # noqa: E402

DDP = {"sweep": "ddp", "dropout": 0.0, "warmup_steps": 2, "decay_fraction": 0.5, "max_steps": 12, "val_every": 6,
       "stop_at": 1.0, "val_generation": 8}  # what the sweep of these tests changes of the helper's


def train(**changes) -> dict:
    """The train section of these tests, with `changes`."""
    return train_section(**{**DDP, **changes})


def test_shards_of_a_global_batch_give_its_mean_loss():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, 12, (24,), generator=g)
    prompts = torch.randint(1, 4, (24,), generator=g)
    split = Split(torch.randint(1, 9, (24, 12), generator=g), lengths, prompts)
    whole = next(iter(TrainStream(split, 8, 3, 1, lambda: 0)))
    shards = [next(iter(TrainStream(split, 8, 3, 1, lambda: 0, rank, 2))) for rank in (0, 1)]
    assert torch.equal(torch.cat([s[0] for s in shards]), whole[0])  # the same rows, split in two
    logits = torch.randn(24, 11, 9, generator=g, dtype=torch.float64)
    full = chain_loss(logits[:8], chain_targets(*whole))
    per_rank = [chain_loss(logits[4 * r : 4 * r + 4], chain_targets(*s[:3]), s[3]) for r, s in enumerate(shards)]
    # DDP averages the processes' gradients: the mean of their losses is the global batch's mean loss
    torch.testing.assert_close(sum(per_rank) / 2, full)


def test_devices_must_divide_the_batch_and_own_the_run():
    with pytest.raises(ParamError, match="train.batch_size: 32 is not divisible by train.devices"):
        TrainParams.parse(train(devices=3))
    with pytest.raises(ParamError, match="train.concurrency: must be 1 or auto"):
        TrainParams.parse(train(devices=2, concurrency=2))
    assert TrainParams.parse(train()).devices == 1 and "devices" not in TrainParams.parse(train()).training()


@pytest.mark.slow
def test_ddp_over_two_cpu_processes_matches_one_process(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    data = tmp_path / "data"
    write_dataset(make_task("lis", 5), {"train": 400, "val": 64, "test": 16}, 7, data / "lis_n5")
    weights = {}
    for devices in (1, 2):
        params = tmp_path / f"params{devices}.yaml"
        params.write_text(yaml.safe_dump({"train": train(devices=devices, widths=[16, 24])}))
        runs, runtime = tmp_path / f"runs{devices}", tmp_path / f"runtime{devices}"
        train_stage.run(params, data, runs, runtime, only=["lis_n5-standard-w16-s0"])  # as a GPU shard asks
        assert sorted(p.name for p in runs.iterdir()) == ["lis_n5-standard-w16-s0"]  # not the w24 run, nor sweep.json
        record = json.loads((runs / "lis_n5-standard-w16-s0" / "train.json").read_text())
        assert record["status"] == "finished" and record["steps"] == 12
        assert json.loads((runtime / "lis_n5-standard-w16-s0.json").read_text())["devices"] == devices
        weights[devices] = torch.load(runs / "lis_n5-standard-w16-s0" / "model.ckpt", weights_only=True)["state_dict"]
    assert weights[1].keys() == weights[2].keys()
    for name in weights[1]:  # the same training, its sums in another order (Adam amplifies that a little)
        torch.testing.assert_close(weights[2][name], weights[1][name], rtol=0, atol=3e-4)  # a tenth of a step
    # one W&B run per training: the DDP training's second process logs nothing
    files = sorted((tmp_path / "wandb").rglob("run-*.wandb"))
    assert sorted(summary_of(f)["summary"]["devices"] for f in files) == [1, 2]


def test_pool_processes_are_spread_over_the_gpus_this_process_sees(monkeypatch):
    import os

    from pipeline.execution.distributed import gpu_slots, pin_gpu

    def taken(slots, n):
        out = []
        for _ in range(n):
            pin_gpu(slots)
            out.append(os.environ["CUDA_VISIBLE_DEVICES"])
        return out

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert taken(gpu_slots(5, 2), 5) == ["0", "1", "0", "1", "0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # a scheduler gave this job GPUs 3 and 5
    assert taken(gpu_slots(3, 2), 3) == ["3", "5", "3"]


def test_shards_of_a_sweep_train_their_own_runs_and_the_whole_sweep_reuses_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    data = tmp_path / "data"
    write_dataset(make_task("lis", 5), {"train": 100, "val": 16, "test": 16}, 7, data / "lis_n5")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train": train(widths=[8, 16, 24], max_steps=2, val_every=2)}))
    runs, runtime = tmp_path / "runs", tmp_path / "runtime"
    trained = []
    for shard in ((0, 2), (1, 2)):  # two tasks of a job array, one after the other here
        train_stage.run(params, data, runs, runtime, shard)
        trained.append(sorted(p.name for p in runs.iterdir()))
        assert not (runs / "sweep.json").exists()  # the sweep is recorded once all shards are done
    assert trained == [["lis_n5-standard-w24-s0", "lis_n5-standard-w8-s0"],
                       ["lis_n5-standard-w16-s0", "lis_n5-standard-w24-s0", "lis_n5-standard-w8-s0"]]
    capsys.readouterr()
    train_stage.run(params, data, runs, runtime)
    assert capsys.readouterr().err.count(": reused") == 3  # nothing trained twice
    assert len(json.loads((runs / "sweep.json").read_text())["runs"]) == 3
    assert train_stage.parse_shard("1/8") == (1, 8)
    for bad in ("8/8", "-1/2", "1", "a/b"):
        with pytest.raises(ParamError, match="train --shard"):
            train_stage.parse_shard(bad)
