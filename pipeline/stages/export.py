"""`export`: one task and size written in the CoT_benchmark text format, for exchange with that code."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..execution.io import check_writable
from ..generation import check_sizes, generate_splits, read_split, replace_dir
from ..tasks import make_task
from ..tasks.cot_text import write_cot


def run(task_name: str, n: int, train_size: int, test_size: int, seed: int, out: Path, **options) -> None:
    task = make_task(task_name, n, **options)
    for flag, size in (("--train-size", train_size), ("--test-size", test_size)):
        if size < 1:
            raise ValueError(f"{flag} must be a positive integer, got {size}")
    if seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {seed}")
    sizes = {"train": train_size, "test": test_size}
    check_sizes(task, sizes)
    out = Path(out)
    check_writable(out)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out) as tmp:
        arrays, text = Path(tmp) / "arrays", Path(tmp) / "text"
        arrays.mkdir()
        generate_splits(task, sizes, seed, arrays)
        write_cot(task, text, {s: task.decode_batch(read_split(task, arrays, s)) for s in sizes})
        # chain/ and decoder/ replace an earlier export; nothing else in `out` is touched
        for kind in ("chain", "decoder"):
            replace_dir(text / kind, out / kind)
