"""Data generation benchmark: vectorised generators against plain per-sample Python, and one
end-to-end dataset of 1M ED n=20 training samples (time and peak memory, in a fresh process).

    python -m benchmarks data            # prints a table, writes benchmarks/results/data.json
"""

from __future__ import annotations

import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.provenance import git_rev
from pipeline.tasks import make_task

# The largest problem size of each task in the paper's grid (ED_Local: our largest).
LARGEST = {"arithmetic": 16, "ed": 20, "lis": 250, "ed_local": 60}
TARGET_SPEEDUP = 50
VECTOR_SECONDS = 3.0  # time spent on each side of a comparison (at least)
REFERENCE_SECONDS = 3.0


def samples_per_second(draw, batch: int, seconds: float) -> tuple[float, int]:
    draw(min(batch, 256))  # warm-up
    done, start = 0, time.perf_counter()
    while True:
        draw(batch)
        done += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed, done


def compare(task_name: str, n: int) -> dict:
    task = make_task(task_name, n)
    rng = np.random.default_rng(0)
    chunk = max(1024, (1 << 24) // task.max_len)
    fast, fast_count = samples_per_second(lambda k: task.generate(rng, k, "train"), chunk, VECTOR_SECONDS)
    py = random.Random(0)

    def reference(k: int) -> None:
        for _ in range(k):
            task.reference_sample(py, "train")

    slow, slow_count = samples_per_second(reference, 16, REFERENCE_SECONDS)
    return {"task": task_name, "n": n, "vectorised_per_s": fast, "vectorised_samples": fast_count,
            "reference_per_s": slow, "reference_samples": slow_count, "speedup": fast / slow}


def full_run(size: int) -> dict:
    """1M ED n=20 training samples written as a dataset, in a fresh single-threaded process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "benchmarks.data_generation", "--child", str(size)]
    if hasattr(os, "sched_getaffinity") and subprocess.run(["which", "taskset"], capture_output=True).returncode == 0:
        cmd = ["taskset", "-c", str(min(os.sched_getaffinity(0))), *cmd]  # one core
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def child(size: int) -> None:
    from pipeline.generation import generate_splits

    task = make_task("ed", 20)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_splits(task, {"train": size}, 2023, Path(tmp))
        seconds = time.perf_counter() - start
        written = sum(p.stat().st_size for p in Path(tmp).glob("*.npy"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    print(json.dumps({"task": "ed", "n": 20, "train_samples": size, "seconds": seconds,
                      "samples_per_s": size / seconds, "bytes_written": written, "peak_rss_bytes": peak,
                      "peak_over_written": peak / written}))


def run(json_path: Path, full_size: int) -> dict:
    rows = [compare(name, n) for name, n in LARGEST.items()]
    print(f"{'task':<11}{'n':>5}{'vectorised/s':>15}{'plain Python/s':>16}{'speedup':>10}  target >= {TARGET_SPEEDUP}x")
    for r in rows:
        ok = "ok" if r["speedup"] >= TARGET_SPEEDUP else "BELOW TARGET"
        print(f"{r['task']:<11}{r['n']:>5}{r['vectorised_per_s']:>15,.0f}{r['reference_per_s']:>16,.0f}"
              f"{r['speedup']:>9.1f}x  {ok}")
    result = {"git_rev": git_rev(), "python": platform.python_version(), "numpy": np.__version__,
              "machine": platform.machine(), "cpus": os.cpu_count(),
              "command": "python -m benchmarks data", "comparisons": rows}
    if full_size:
        full = full_run(full_size)
        result["full_run"] = full
        print(f"ED n=20, {full['train_samples']:,} training samples on one core: {full['seconds']:.1f}s "
              f"({full['samples_per_s']:,.0f}/s); peak RSS {full['peak_rss_bytes'] / 2**20:,.0f} MiB = "
              f"{full['peak_over_written']:.2f}x the {full['bytes_written'] / 2**20:,.0f} MiB written "
              f"(targets: < 20 s, < 2x)")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    child(int(sys.argv[2]))
