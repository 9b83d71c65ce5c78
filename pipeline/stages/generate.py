"""The `generate` stage: one dataset folder per (task, n) of params.yaml's `generate` section."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from ..generation import remove_abandoned, write_dataset
from ..params import load_section
from .io import check_writable, say

OUT = Path("data/datasets")


def run(params: Path = Path("params.yaml"), out: Path = OUT) -> None:
    spec = load_section(params, "generate")  # every bad value fails here, before any file is touched
    check_writable(out)
    for path in remove_abandoned(out):  # what a killed earlier run left behind
        say(f"generate: removed {path}, left by an interrupted run")
    wanted = {d.name for d in spec.datasets}
    for dataset in spec.datasets:
        start = time.perf_counter()
        meta = write_dataset(dataset.task, spec.sizes, spec.seed, out / dataset.name)
        counts = ", ".join(f"{s} {v['count']}" for s, v in meta["splits"].items())
        say(f"generate: {dataset.name}: {counts} in {time.perf_counter() - start:.1f}s")
    for stale in sorted(p for p in out.iterdir() if p.is_dir() and p.name not in wanted):
        if (stale / "meta.json").exists():  # only ever remove what this stage wrote
            shutil.rmtree(stale)
