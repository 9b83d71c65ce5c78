"""The `generate` stage: one dataset folder per (task, n) of params.yaml's `generate` section."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from ..execution import cli
from ..execution.io import check_writable, say
from ..generation import remove_abandoned, tasks_of, write_dataset
from ..layout import DATA, PARAMS
from ..params import load_section


def run(params: Path = PARAMS, out: Path = DATA) -> None:
    spec = load_section(params, "generate")  # every bad value fails here, before any file is touched
    datasets = tasks_of(spec, str(params))
    check_writable(out)
    for path in remove_abandoned(out):  # what a killed earlier run left behind
        say(f"generate: removed {path}, left by an interrupted run")
    wanted = {d.name for d in spec.datasets}
    for dataset, task in datasets:
        start = time.perf_counter()
        meta = write_dataset(task, spec.sizes, spec.seed, out / dataset.name)
        counts = ", ".join(f"{s} {v['count']}" for s, v in meta["splits"].items())
        say(f"generate: {dataset.name}: {counts} in {time.perf_counter() - start:.1f}s")
    for stale in sorted(p for p in out.iterdir() if p.is_dir() and p.name not in wanted):
        if (stale / "meta.json").exists():  # only ever remove what this stage wrote
            shutil.rmtree(stale)


def main(argv: list[str] | None = None) -> int:
    top = cli.parser("python -m pipeline.stages.generate", "DVC stage: datasets of params.yaml's generate section")
    cli.params_option(top)
    top.add_argument("--out", type=Path, default=DATA, help="folder of the dataset folders (default: %(default)s)")
    return cli.command(top, lambda a: run(a.params, a.out), argv)


if __name__ == "__main__":
    sys.exit(main())
