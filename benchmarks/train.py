"""Training throughput benchmark: tokens per second of the train stage's own training (`training.fit`,
Lightning included, on a real generated dataset) against the public CoT_benchmark architecture as it
trains (`baseline.py`: float32, explicit masked softmax, AdamW), on the same device in one run.

    python -m benchmarks train                    # GPU: the reference cells, writes benchmarks/results/train.json
    python -m benchmarks train --device cpu --steps 3
    python -m benchmarks train --sweep            # the train stage on 12 small runs (sweep.json)

A token is one position of a training batch (batch x length, every training batch at the split's
full width), in both. Each measurement skips warm-up steps (compilation, graph capture, allocator)
and times the rest with the device synchronised at both ends only. MFU is model FLOPs (3x the
forward pass of `cost.py`: forward and backward) over the bf16 matrix peak measured in the same run
(a large bf16 matmul).
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from pipeline.provenance import git_rev

# (task, n) with L = max_len + 1: ED at the sizes of the paper's Figure 3 (n=6-20), and n=4 for the CPU
DATASETS = {44: ("ed", 4), 74: ("ed", 6), 212: ("ed", 12), 344: ("ed", 16), 508: ("ed", 20)}
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

    torch.manual_seed(0)
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # float32 as the public code trains (fit allows TF32)
    try:
        return _baseline(vocab, length, width, batch, device, warmup, steps)
    finally:
        torch.set_float32_matmul_precision(precision)


def _baseline(vocab: int, length: int, width: int, batch: int, device: str, warmup: int, steps: int) -> float:
    from .baseline import BaselineGPT

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
    """Seconds and positions of the training steps after `warmup`, and the seconds before them
    (start-up: moving the data, compiling, capturing graphs)."""

    def __init__(self, warmup: int, device: str) -> None:
        self.warmup, self.device = warmup, device
        self.begin = time.perf_counter()
        self.start, self.seconds, self.positions, self.startup = None, 0.0, 0, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            sync(self.device)
            self.start = time.perf_counter()
            self.startup = self.start - self.begin

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.start is not None:  # no synchronisation between steps: the stage has none either
            self.positions += batch[0].shape[0] * (batch[0].shape[1] - 1)
            if trainer.global_step >= trainer.max_steps:
                sync(self.device)
                self.seconds = time.perf_counter() - self.start


def settings(batch: int, steps: int, compile_mode: str, options: dict | None = None) -> dict:
    """Training settings of a benchmark run (the train section's shape; no early stop)."""
    return {"layers": 3, "heads": 4, "dropout": 0.1, "attention_options": options or {}, "batch_size": batch,
            "lr": 1e-3, "weight_decay": 0.01, "warmup_steps": 10, "decay_fraction": 1.0, "grad_clip": 1.0,
            "max_steps": steps, "val_every": steps, "stop_at": 1.0, "val_generation": 0, "compile": compile_mode}


def stage_tokens_per_s(folder: Path, meta: dict, attention: str, width: int, batch: int, device: str,
                       warmup: int, steps: int, work: Path, compile_mode: str = "auto",
                       options: dict | None = None) -> dict:
    """The train stage's training of one run, on the dataset at `folder`: tokens/s, start-up
    seconds, peak GPU GiB."""
    from pipeline.training import fit

    timer = StepTimer(warmup, device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    fit(folder, meta, work / f"{attention}-w{width}", {"attention": attention, "width": width, "seed": 0},
        settings(batch, warmup + steps, compile_mode, {attention: options} if options else None), callbacks=[timer])
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return {"tokens_per_s": timer.positions / timer.seconds, "startup_seconds": timer.startup, "peak_gpu_gib": peak,
            "step_seconds": timer.seconds / steps}


def variants(device: str) -> list[tuple[str, str, dict]]:
    """(record name, attention type, options): each registered type as it benchmarks itself."""
    from pipeline.attention import ATTENTION

    return [(name, attention, options) for attention, cls in ATTENTION.items()
            for name, options in cls.benchmark_variants(device).items()]


def run(out: Path, device: str, cells: list[tuple[int, int]], batch: int, warmup: int, steps: int,
        train_size: int, git: str | None = None, compiles: tuple[str, ...] = ("auto",),
        only: tuple[str, ...] = ()) -> dict:
    """Every cell (width, L) x variant (`only`: these record names) x compile mode; a record that
    fails carries its error and the benchmark goes on."""
    from pipeline.cost import flops_per_token
    from pipeline.data import verify
    from pipeline.execution.runtime import quiet
    from pipeline.training import compile_mode

    quiet()
    peak = matmul_peak(device)
    head = {**provenance(device, git), "command": "python -m benchmarks train --device "
            f"{device} --batch {batch} --steps {steps} --compile {','.join(compiles)} --cells "
            + ",".join(f"{w}x{n}" for w, n in cells) + (f" --only {','.join(only)}" if only else ""),
            "bf16_matmul_peak_flops": peak, "batch": batch, "warmup_steps": warmup, "timed_steps": steps}
    records = []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        tmp = Path(tmp)
        for width, length in cells:
            folder = dataset(tmp, length, train_size)
            meta = verify(folder)
            vocab, seq = len(meta["vocab"]), meta["max_len"]
            base = baseline_tokens_per_s(vocab, seq, width, batch, device, warmup, steps)
            for name, attention, options in variants(device):
                if only and name not in only:
                    continue
                for mode in compiles:
                    record = {"attention": name, "width": width, "L": seq + 1,
                              "compile": compile_mode(mode, width) if device == "cuda" else "none",
                              "baseline_tokens_per_s": base}
                    try:
                        record |= stage_tokens_per_s(folder, meta, attention, width, batch, device, warmup, steps,
                                                     tmp, mode, options)
                    except Exception as err:  # recorded, not fatal: one failing path must not hide the rest
                        record |= {"error": f"{type(err).__name__}: {str(err).strip()[:300]}"}
                        print(f"train: {name} w{width} L={seq + 1} {record['compile']}: {record['error']}",
                              flush=True)
                        records.append(record)
                        continue
                    model_flops = 3 * flops_per_token(seq, width, 3, 4, vocab, attention)
                    rate = record["tokens_per_s"]
                    record |= {"ratio": rate / base, "mfu": rate * model_flops / peak if peak else None}
                    records.append(record)
                    write(out, {**head, "records": records})  # so far: a benchmark cut short keeps its records
                    print(f"train: {name} w{width} L={seq + 1} {record['compile']}: {rate / 1e6:.2f} M tokens/s,"
                          f" baseline {base / 1e6:.2f}, ratio {rate / base:.2f}"
                          + (f", MFU {record['mfu']:.1%}" if record["mfu"] else "")
                          + f", start-up {record['startup_seconds']:.1f}s"
                          + (f", {record['peak_gpu_gib']:.1f} GiB" if record["peak_gpu_gib"] else ""), flush=True)
    result = {**head, "records": records}
    write(out, result)
    return result


def dataset(tmp: Path, length: int, train_size: int, test_size: int = 256) -> Path:
    """A generated dataset with L = max_len + 1 (`DATASETS`), made once per benchmark."""
    from pipeline.generation import write_dataset
    from pipeline.tasks import make_task

    if length not in DATASETS:
        raise ValueError(f"train: no dataset for L={length} (known: {sorted(DATASETS)})")
    task_name, n = DATASETS[length]
    folder = tmp / f"{task_name}_n{n}"
    if not folder.exists():
        write_dataset(make_task(task_name, n), {"train": train_size, "val": 256, "test": test_size}, 0, folder)
    return folder


def host() -> dict:
    """The machine behind the device: two H200 machines of one kind ran the same eager sweep 2x apart
    (measured on two H200 hosts), its small models bound by the host's CPU, so a ratio only holds within one host."""
    import os

    cpu = platform.processor() or "unknown"
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    one = torch.zeros(1)
    start = time.perf_counter()
    for _ in range(20000):  # what an eager step of a small model waits on: the CPU's cost of one op
        one.add_(1)
    dispatch_us = (time.perf_counter() - start) / 20000 * 1e6
    return {"name": platform.node(), "cpu": cpu, "cpus": os.cpu_count(), "op_dispatch_us": round(dispatch_us, 2)}


def provenance(device: str, git: str | None) -> dict:
    import lightning

    return {"device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
            "host": host(), "git_rev": git or git_rev(),
            "versions": {"torch": torch.__version__, "lightning": lightning.__version__}}


def write(out: Path, result: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


SWEEP_WIDTHS = [32, 64, 96, 128]
SWEEP_EVALUATE = {"batch_size": 512, "generation_samples": 1000, "concurrency": "auto"}  # conf/profile/gpu.yaml's
SWEEP_TEST_SIZE = 2000
SWEEP_PHASES = ("stage", "evaluate", "eager", "eager_priced")
SWEEP_DEFAULT_PHASES = SWEEP_PHASES[:3]  # the leg that is run, not priced: at 600 steps a run it fits a 10-minute job
PRICE_WARMUP, PRICE_STEPS = 10, 30  # eager_priced: each run's eager step, timed as bench-train's cells


def price_eager(folder: Path, meta: dict, widths: list[int], batch: int, steps: int, device: str,
                work: Path) -> dict:
    """The one-after-another eager leg priced rather than run (at the grid's run lengths it takes longer
    than a 10-minute job): each run's start-up and eager step through the train stage's training, timed
    in this process, at `steps` a run. It leaves out each run's validation and W&B, so it is below the
    leg's real time and a speedup over it is a lower bound."""
    from pipeline.attention import ATTENTION
    from pipeline.params import Run

    per_run = {}
    for attention in ATTENTION:
        for width in widths:
            cell = stage_tokens_per_s(folder, meta, attention, width, batch, device, PRICE_WARMUP, PRICE_STEPS,
                                      work, "none")
            per_run[Run(folder.name, attention, width, 0).id] = {
                "startup_seconds": cell["startup_seconds"], "step_seconds": cell["step_seconds"],
                "seconds": cell["startup_seconds"] + max(steps - PRICE_WARMUP, 0) * cell["step_seconds"]}
    return {"seconds": sum(r["seconds"] for r in per_run.values()), "warmup_steps": PRICE_WARMUP,
            "timed_steps": PRICE_STEPS, "per_run": per_run}


def stage_phase(spec: str) -> tuple[str, int | str, str]:
    """A stage configuration CONCURRENCY:COMPILE of `--sweep-stage`: its phase name, concurrency, compile."""
    concurrency, _, mode = spec.partition(":")
    label = "stage_default" if spec == "auto:auto" else f"stage_c{concurrency}_{mode}"
    return label, int(concurrency) if concurrency.isdigit() else concurrency, mode


def run_sweep(out: Path, steps: int, train_size: int, batch: int, git: str | None = None,
              widths: list[int] = SWEEP_WIDTHS, test_size: int = SWEEP_TEST_SIZE,
              stage: tuple[str, ...] = ("auto:auto",), phases: tuple[str, ...] = SWEEP_DEFAULT_PHASES) -> dict:
    """The train stage (`stages.train.run`, W&B and bookkeeping included) on a sweep of small models
    (ED n=12, L=212, every attention type x `widths`), twice in a fresh project: one run after the
    other eagerly, then as the stage runs them by default (concurrency and compile: auto). Then the
    evaluate stage on the second sweep's runs, as the GPU profile grades them (2000 test samples,
    1000 of them by free generation), timed against that sweep's training. `stage`: the stage's
    configurations to time (CONCURRENCY:COMPILE, each a phase); `phases`: which of stage, evaluate
    (after the first stage configuration), eager and eager_priced (`price_eager`) to run."""
    import os

    import yaml

    from pipeline.attention import ATTENTION
    from pipeline.stages import evaluate as evaluate_stage
    from pipeline.stages import train as train_stage

    unknown = set(phases) - set(SWEEP_PHASES)
    bad = [spec for spec in stage if spec.count(":") != 1]
    if unknown or bad:  # before any training
        raise ValueError(f"train: --sweep-phases: unknown {sorted(unknown)} (known: {', '.join(SWEEP_PHASES)})"
                         if unknown else f"train: --sweep-stage: expected CONCURRENCY:COMPILE, got {bad[0]!r}")
    timings, per_run, evaluation, priced = {}, {}, {}, {}
    configurations = [stage_phase(spec) for spec in stage] if "stage" in phases else []
    labels = [label for label, _, _ in configurations]
    expected = {*labels, *(["sequential_eager"] if "eager" in phases else []),
                *([f"evaluate_{labels[0]}" if labels else "evaluate"] if "evaluate" in phases else []),
                *(["eager_priced"] if "eager_priced" in phases else [])}  # none: never
    command = f"python -m benchmarks train --sweep --sweep-steps {steps} --batch {batch}"
    if tuple(stage) != ("auto:auto",) or tuple(phases) != SWEEP_DEFAULT_PHASES:
        command += f" --sweep-stage {','.join(stage)} --sweep-phases {','.join(phases)}"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    about = {**provenance(device, git), "command": command,
             # the settings a caller may set from outside (each pool process inherits them): threads, and
             # CUDA MPS (its pipe directory set: the runs share the GPU through an MPS server)
             "environment": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "TORCHINDUCTOR_COMPILE_THREADS",
                                                         "CUDA_MPS_PIPE_DIRECTORY")
                             if k in os.environ},
             "runs": len(ATTENTION) * len(widths), "widths": widths, "L": 212, "steps_per_run": steps, "batch": batch}

    def record() -> dict:  # written after every phase: a command cut off by its time limit keeps what it timed
        eager = timings.get("sequential_eager")
        speedups = {label: eager / timings[label] for label in labels if eager and label in timings}
        over_priced = {label: priced["seconds"] / timings[label] for label in labels if priced and label in timings}
        done = timings.keys() | ({"eager_priced"} if priced else set())
        result = {**about, "seconds": timings, "train_seconds_per_run": per_run, "complete": expected <= done,
                  "speedup": speedups.get("stage_default"), "speedups": speedups, "evaluate": evaluation,
                  **({"eager_priced": priced, "speedup_priced": over_priced.get("stage_default"),
                      "speedups_priced": over_priced} if priced else {})}
        write(out, result)
        return result

    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        data.mkdir()
        folder = dataset(data, 212, train_size, test_size)
        section = {"sweep": "bench", "datasets": [folder.name], "attentions": list(ATTENTION), "widths": widths,
                   "seeds": [0], **settings(batch, steps, "auto"), "val_every": steps // 2, "val_generation": 64,
                   "concurrency": "auto"}
        home = Path.cwd()

        def evaluate_sweep(label: str) -> None:  # the evaluate stage on that phase's runs
            (tmp / "params.yaml").write_text(yaml.safe_dump({"evaluate": SWEEP_EVALUATE}))
            start = time.perf_counter()
            evaluate_stage.run(tmp / "params.yaml", data, tmp / f"runs-{label}", tmp / "results",
                               tmp / "runtime-evaluate", tmp / "metrics.json")
            timings[f"evaluate_{label}"] = time.perf_counter() - start
            runs = [json.loads(f.read_text()) for f in (tmp / "runtime-evaluate").glob("*.json")]
            print(f"train: sweep evaluate: {timings[f'evaluate_{label}']:.1f}s", flush=True)
            evaluation.update({
                **SWEEP_EVALUATE, "test_size": test_size, "of": label,
                "seconds_per_run": sorted(r["eval_seconds"] for r in runs),
                # where a run's evaluation goes: W&B's start and finish, trainer.test, generation
                "test_seconds_per_run": sorted(r["test_seconds"] for r in runs),
                "generation_seconds_per_run": sorted(r["generation_seconds"] for r in runs),
                "over_training": timings[f"evaluate_{label}"] / timings[label]})
            record()

        def train(label: str, concurrency, mode: str) -> None:
            (tmp / "params.yaml").write_text(yaml.safe_dump(
                {"train": {**section, "sweep": label, "concurrency": concurrency, "compile": mode}}))
            start = time.perf_counter()
            train_stage.run(tmp / "params.yaml", data, tmp / f"runs-{label}", tmp / f"runtime-{label}")
            timings[label] = time.perf_counter() - start
            per_run[label] = {r["run"]: r["train_seconds"] for r in
                              (json.loads(f.read_text()) for f in sorted((tmp / f"runtime-{label}").glob("*.json")))}
            print(f"train: sweep {label}: {timings[label]:.1f}s", flush=True)
            record()

        try:
            os.chdir(tmp)
            # the stage and its evaluation first, the slow baseline last: the numbers that are new come back
            for label, concurrency, mode in configurations:
                train(label, concurrency, mode)
            if "evaluate" in phases and labels:
                evaluate_sweep(labels[0])
            if "eager_priced" in phases:
                from pipeline.data import verify

                priced.update(price_eager(folder, verify(folder), widths, batch, steps, device, tmp / "priced"))
                print(f"train: sweep eager, priced: {priced['seconds']:.1f}s", flush=True)
                record()
            if "eager" in phases:
                train("sequential_eager", 1, "none")
        finally:
            os.chdir(home)
    return record()
