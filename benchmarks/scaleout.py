"""Scale-out benchmark: a sweep's speed-up from one GPU to several, and one training's
tokens/s with Lightning DDP over several GPUs against one, written to benchmarks/results/scaleout.json.

    python -m benchmarks scaleout                 # on a host of 2 or more GPUs
    python -m benchmarks scaleout --gpus 2 --sweep-width 256 --ddp-width 1024

The sweep part runs the train stage itself (`stages.train.run`, in a fresh process each time, so
that the GPUs it sees are set before CUDA starts) on the same sweep with 1 GPU visible, then with
`--gpus`. The DDP part times the steady training steps of one run (`bench.train.StepTimer`, after
warm-up) in one process, then under torchrun over `--gpus` processes, where every process trains its
share of each global batch. On the CPU (`--device cpu`) the same commands run with CPU processes in
place of GPUs: a check that the benchmark works, not a measurement.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from .train import dataset, provenance, settings, stage_tokens_per_s, write


def _env(visible: int | None) -> dict:
    from pipeline.execution.distributed import child_env

    env = child_env()
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(visible))
    return env


def sweep_seconds(tmp: Path, gpus: int | None, width: int, runs: int, steps: int, batch: int, train_size: int,
                  concurrency: int | str) -> float:
    """Seconds of the train stage on a sweep of `runs` runs (ED n=12: standard at `width`, one seed
    each) with `gpus` GPUs visible (None: the CPU)."""
    work = tmp / f"sweep-{gpus}-{concurrency}"
    data = work / "data"
    data.mkdir(parents=True)
    folder = dataset(data, 212, train_size)
    section = {"sweep": "scaleout", "datasets": [folder.name], "attentions": ["standard"], "widths": [width],
               "seeds": list(range(runs)), **settings(batch, steps, "auto"), "val_every": steps,
               "concurrency": concurrency}
    (work / "params.yaml").write_text(yaml.safe_dump({"train": section}))
    command = [sys.executable, "-m", "pipeline", "train", "--params", "params.yaml", "--data", "data"]
    start = time.perf_counter()
    subprocess.run(command, cwd=work, env=_env(gpus), check=True)
    return time.perf_counter() - start


def ddp_tokens_per_s(tmp: Path, processes: int, width: int, batch: int, warmup: int, steps: int,
                     train_size: int) -> float:
    """Steady tokens/s of one training (ED n=12, standard) over `processes` processes."""
    job = {"tmp": str(tmp), "width": width, "batch": batch, "warmup": warmup, "steps": steps,
           "train_size": train_size, "out": str(tmp / f"ddp-{processes}.json")}
    command = [sys.executable, "-m", "benchmarks.scaleout", json.dumps(job)]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                   *command[1:]]
    subprocess.run(command, env=_env(processes if _cuda() else None), check=True)
    return json.loads(Path(job["out"]).read_text())["tokens_per_s"]


def _worker(job: dict) -> None:
    """One process of the DDP measurement (or the only one): rank 0 writes the whole training's
    tokens/s (every process trains an equal share of each batch in the same steps)."""
    import torch

    from pipeline.data import verify
    from pipeline.execution.distributed import Group, distributed
    from pipeline.execution.runtime import quiet

    quiet()
    group = Group() if distributed() else None
    tmp = Path(job["tmp"])
    folder = tmp / "data" / "ed_n12"
    if (group is None or group.rank == 0) and not folder.exists():
        dataset(tmp / "data", 212, job["train_size"])
    if group is not None:
        group.barrier()  # the dataset is written before any process reads it
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = stage_tokens_per_s(folder, verify(folder), "standard", job["width"], job["batch"], device,
                                job["warmup"], job["steps"], tmp / "work")
    world = group.world if group else 1
    if group is None or group.rank == 0:
        Path(job["out"]).write_text(json.dumps({"tokens_per_s": result["tokens_per_s"] * world}))
    if group is not None:
        group.close()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run(out: Path, gpus: int, sweep_width: int, sweep_runs: int, sweep_steps: int, ddp_width: int, batch: int,
        warmup: int, steps: int, train_size: int, git: str | None = None) -> dict:
    cuda = _cuda()
    if cuda:
        import torch

        if torch.cuda.device_count() < gpus:
            raise ValueError(f"scaleout: --gpus {gpus}, but this machine has {torch.cuda.device_count()}")
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
        tmp = Path(tmp)
        if cuda:  # concurrency auto: as many runs at once as fit, on every visible GPU
            one = sweep_seconds(tmp, 1, sweep_width, sweep_runs, sweep_steps, batch, train_size, "auto")
            many = sweep_seconds(tmp, gpus, sweep_width, sweep_runs, sweep_steps, batch, train_size, "auto")
        else:  # CPU processes stand in for GPUs
            one = sweep_seconds(tmp, None, sweep_width, sweep_runs, sweep_steps, batch, train_size, 1)
            many = sweep_seconds(tmp, None, sweep_width, sweep_runs, sweep_steps, batch, train_size, gpus)
        single = ddp_tokens_per_s(tmp, 1, ddp_width, batch, warmup, steps, train_size)
        spread = ddp_tokens_per_s(tmp, gpus, ddp_width, batch, warmup, steps, train_size)
    result = {**provenance("cuda" if cuda else "cpu", git),
              "command": f"python -m benchmarks scaleout --gpus {gpus} --sweep-width {sweep_width} --sweep-runs "
                         f"{sweep_runs} --sweep-steps {sweep_steps} --ddp-width {ddp_width} --batch {batch} --warmup "
                         f"{warmup} --steps {steps}",
              "gpus": gpus, "L": 212, "batch": batch,
              "sweep": {"runs": sweep_runs, "width": sweep_width, "steps": sweep_steps,
                        "seconds_one_gpu": one, f"seconds_{gpus}_gpus": many},
              "sweep_speedup": one / many,
              "ddp": {"width": ddp_width, "tokens_per_s_one_gpu": single, f"tokens_per_s_{gpus}_gpus": spread},
              "ddp_speedup": spread / single}
    write(out, result)
    print(f"scaleout: sweep {one:.1f}s on 1 GPU, {many:.1f}s on {gpus}: {one / many:.2f}x; DDP w{ddp_width} "
          f"{single / 1e6:.2f} -> {spread / 1e6:.2f} M tokens/s: {spread / single:.2f}x", flush=True)
    return result


if __name__ == "__main__":
    _worker(json.loads(sys.argv[1]))
