"""Training throughput benchmark: tokens per second of the train stage's own training (`training.fit`,
Lightning included, on a real generated dataset) against the public CoT_benchmark architecture as it
trains (`baseline.py`: float32, explicit masked softmax, AdamW), on the same device in one run.

    python -m pipeline bench-train                    # GPU: the issue's cells, writes reports/bench/train.json
    python -m pipeline bench-train --device cpu --quick

A token is one position of a training batch (batch x trimmed length), in both. Each measurement
skips warm-up steps (compilation, allocator) and times the rest with the device synchronised at both
ends. MFU is model FLOPs (3x the forward pass of `cost.py`: forward and backward) over the bf16
matrix peak measured in the same run (a large bf16 matmul).
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from ..provenance import git_rev

# (task, n) with L = max_len + 1 near the L=212 and L=508
DATASETS = {44: ("ed", 4), 212: ("ed", 12), 508: ("ed", 20)}
GPU_CELLS = [(256, 212), (256, 508), (512, 212), (1024, 212)]  # (width, L)
CPU_CELLS = [(16, 44)]


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: str, size: int = 8192, repeat: int = 20) -> float | None:
    """Measured bf16 matrix FLOP/s (the denominator of MFU); None on the CPU."""
    if device != "cuda":
        return None
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeat):
        a @ b
    sync(device)
    return 2 * size**3 * repeat / (time.perf_counter() - start)


def baseline_tokens_per_s(vocab: int, length: int, width: int, batch: int, device: str, warmup: int,
                          steps: int) -> float:
    from .baseline import BaselineGPT

    torch.manual_seed(0)
    model = BaselineGPT(vocab, length, width).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(1, vocab, (batch, length), device=device)
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return steps * batch * (length - 1) / (time.perf_counter() - start)


class StepTimer(Callback):
    """Seconds and positions of the training steps after `warmup`."""

    def __init__(self, warmup: int, device: str) -> None:
        self.warmup, self.device = warmup, device
        self.start, self.seconds, self.positions = None, 0.0, 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            sync(self.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.start is not None:
            self.positions += batch[0].shape[0] * (batch[0].shape[1] - 1)
            sync(self.device)
            self.seconds = time.perf_counter() - self.start


def stage_tokens_per_s(folder: Path, meta: dict, attention: str, width: int, batch: int, device: str,
                       warmup: int, steps: int, work: Path) -> tuple[float, float | None]:
    """The train stage's training of one run, on the dataset at `folder`: tokens/s, peak GPU GiB."""
    from ..training import fit

    settings = {"layers": 3, "heads": 4, "dropout": 0.1, "attention_options": {}, "batch_size": batch,
                "lr": 1e-3, "weight_decay": 0.01, "warmup_steps": 10, "grad_clip": 1.0,
                "max_steps": warmup + steps, "val_every": warmup + steps, "stop_at": 1.0, "val_generation": 0}
    timer = StepTimer(warmup, device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    fit(folder, meta, work / f"{attention}-w{width}", {"attention": attention, "width": width, "seed": 0},
        settings, callbacks=[timer])
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return timer.positions / timer.seconds, peak


def run(out: Path, device: str, cells: list[tuple[int, int]], batch: int, warmup: int, steps: int,
        train_size: int, git: str | None = None) -> dict:
    from ..attention import ATTENTION
    from ..cost import flops_per_token
    from ..data import verify
    from ..generation import write_dataset
    from ..stages.runtime import quiet
    from ..tasks import make_task

    quiet()
    peak = matmul_peak(device)
    records = []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        tmp = Path(tmp)
        for width, length in cells:
            if length not in DATASETS:
                raise ValueError(f"bench-train: no dataset for L={length} (known: {sorted(DATASETS)})")
            task_name, n = DATASETS[length]
            task = make_task(task_name, n)
            folder = tmp / f"{task_name}_n{n}"
            if not folder.exists():
                write_dataset(task, {"train": train_size, "val": 64, "test": 64}, 0, folder)
            meta = verify(folder)
            vocab, seq = len(meta["vocab"]), meta["max_len"]
            base = baseline_tokens_per_s(vocab, seq, width, batch, device, warmup, steps)
            for attention in ATTENTION:
                rate, memory = stage_tokens_per_s(folder, meta, attention, width, batch, device, warmup, steps, tmp)
                model_flops = 3 * flops_per_token(seq, width, 3, 4, vocab, attention)
                record = {"attention": attention, "width": width, "L": seq + 1, "tokens_per_s": rate,
                          "baseline_tokens_per_s": base, "ratio": rate / base,
                          "mfu": rate * model_flops / peak if peak else None, "peak_gpu_gib": memory}
                records.append(record)
                print(f"bench-train: {attention} w{width} L={seq + 1}: {rate / 1e6:.2f} M tokens/s, baseline "
                      f"{base / 1e6:.2f}, ratio {rate / base:.2f}"
                      + (f", MFU {record['mfu']:.1%}" if record["mfu"] else ""), flush=True)
    import lightning

    result = {"device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
              "git_rev": git or git_rev(),
              "command": f"python -m pipeline bench-train --device {device} --batch {batch} --steps {steps}",
              "versions": {"torch": torch.__version__, "lightning": lightning.__version__},
              "bf16_matmul_peak_flops": peak, "batch": batch, "warmup_steps": warmup, "timed_steps": steps,
              "records": records}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result
