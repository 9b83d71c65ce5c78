"""Writing datasets: deduplicated, disjoint splits drawn chunk by chunk, written atomically (the
file format and its reading are in `data.py`).

Splits are drawn in the order test, val, train, each from its own random stream, and a sample is
kept only if its prompt was never seen before: no duplicates inside a split, no val or test prompt
in train, and the test set does not change when only the training size changes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np

from .data import SPLITS, DataError, read_arrays, sha256
from .params import Dataset, GenerateParams, ParamError
from .tasks import TASKS, Task, TaskError, make_task
from .tasks.base import Batch

GENERATOR_VERSION = 2  # bump whenever the same parameters would give different samples
# 2: arithmetic's `under` training mix follows the public rule (the shortfall goes to n operators)
GENERATION_ORDER = ("test", "val", "train")
CHUNK_TOKENS = 1 << 24  # tokens per generated chunk: bounds the memory next to the output arrays
STALL_SAMPLES = 1 << 22  # this many draws in a row without a new prompt: the task has run out


def split_rng(seed: int, task: Task, split: str) -> np.random.Generator:
    """An independent, platform-independent stream per (seed, task, n, split)."""
    key = (zlib.crc32(task.name.encode()), task.n, GENERATION_ORDER.index(split))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def prompt_hashes(batch: Batch) -> np.ndarray:
    """A 64-bit hash of each sample's prompt (FNV-1a over token ids, then a splitmix finaliser).

    Only used to reject repeats: equal prompts always collide, and a rare collision of different
    prompts only drops a sample, so no duplicate can ever pass.
    """
    width = int(batch.prompt_lengths.max())
    keys = np.ascontiguousarray(batch.tokens[:, :width].T).astype(np.uint64)
    keys[np.arange(width)[:, None] >= batch.prompt_lengths[None, :]] = 0
    h = np.full(len(batch), 0xCBF29CE484222325, dtype=np.uint64)
    prime = np.uint64(0x100000001B3)
    for column in keys:
        h ^= column
        h *= prime
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


def check_sizes(task: Task, sizes: dict[str, int]) -> None:
    for split, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise DataError(f"{split} size must be a non-negative integer, got {size!r}")
    total = sum(sizes.values())
    available = task.min_distinct()
    if total > available:
        raise DataError(
            f"{total} distinct samples asked for, but task {task.name} at n={task.n} is only known to "
            f"have {available}"
        )


def split_plan(task: Task, rng: np.random.Generator, split: str, size: int) -> list:
    """The stages that draw a split, in order: pairs (draws, sample), where sample(rng, start, count)
    returns the stage's draws start .. start + count - 1. A stage with a number of draws makes that
    many (fewer if the split fills first) and keeps the new prompts among them; the last stage has
    draws None and draws until the split is full. A task can define its own plan (`split_plan`:
    arithmetic's `under` mix of the training split); by default one stage of task.generate."""
    own = getattr(task, "split_plan", None)
    stages = own(rng, split, size) if own is not None else None
    if stages is None:
        stages = [(None, lambda rng, start, count: task.generate(rng, count, split))]
    if stages[-1][0] is not None or any(draws is None for draws, _ in stages[:-1]):
        raise DataError(f"task {task.name}: only the last stage of a split's plan may be unbounded")
    return stages


def fill_split(task: Task, rng: np.random.Generator, split: str, size: int, seen: set[int],
               tokens: np.ndarray, lengths: np.ndarray) -> None:
    """Draw samples until `size` new prompts (not in `seen`) fill tokens[:size], lengths[:size]."""
    chunk_rows = max(1024, CHUNK_TOKENS // task.max_len)
    filled, slots = 0, None  # slots[i]: the row of the i-th sample kept (None: row i)

    def keep(batch: Batch, need: int) -> int:
        nonlocal filled
        hashes = prompt_hashes(batch)
        _, first = np.unique(hashes, return_index=True)
        first.sort()  # keep generation order
        fresh = [i for i, h in zip(first.tolist(), hashes[first].tolist()) if h not in seen][:need]
        if fresh:
            rows = np.asarray(fresh)
            seen.update(hashes[rows].tolist())
            width = batch.tokens.shape[1]
            where = slice(filled, filled + len(rows)) if slots is None else slots[filled : filled + len(rows)]
            tokens[where, :width] = batch.tokens[rows]
            lengths[where] = batch.lengths[rows]
            filled += len(rows)
        return len(fresh)

    for draws, sample in split_plan(task, rng, split, size):
        if draws is not None:
            for start in range(0, draws, chunk_rows):
                if filled == size:
                    break
                keep(sample(rng, start, min(chunk_rows, draws - start)), size - filled)
            continue
        if 0 < filled < size:  # the last stage's samples take random rows, not the end of the split
            slots = spread(rng, tokens, lengths, filled, size)
        start, stalled = 0, 0
        while filled < size:
            need = size - filled
            count = min(chunk_rows, max(1024, need + need // 8))
            batch = sample(rng, start, count)
            start += count
            if not keep(batch, need):
                stalled += len(batch)
                if stalled >= STALL_SAMPLES:
                    raise DataError(f"task {task.name} at n={task.n} ran out of distinct samples "
                                    f"after {len(seen)}")
                continue
            stalled = 0


def spread(rng: np.random.Generator, tokens: np.ndarray, lengths: np.ndarray, filled: int,
           size: int) -> np.ndarray:
    """Make room for the size - filled samples still to come at uniformly random rows of the split:
    the samples already in rows [0, filled) that are chosen move to the rows at the end that are
    not. Returns slots, where slots[filled:] are the rows of the samples to come, in order."""
    later = np.sort(rng.choice(size, size - filled, replace=False))
    moved = later[later < filled]
    free = np.setdiff1d(np.arange(filled, size), later, assume_unique=True)
    tokens[free] = tokens[moved]
    lengths[free] = lengths[moved]
    slots = np.zeros(size, dtype=np.int64)
    slots[filled:] = later
    return slots


def generate_splits(task: Task, sizes: dict[str, int], seed: int, folder: Path) -> dict:
    """Write `{split}_tokens.npy` and `{split}_lengths.npy` for every split into folder; return
    the per-split part of meta.json."""
    check_sizes(task, sizes)
    seen: set[int] = set()
    info = {}
    for split in GENERATION_ORDER:
        if split not in sizes:
            continue
        size = sizes[split]
        tokens_path, lengths_path = folder / f"{split}_tokens.npy", folder / f"{split}_lengths.npy"
        tokens = np.lib.format.open_memmap(tokens_path, "w+", task.vocab.dtype, (size, task.max_len))
        lengths = np.lib.format.open_memmap(lengths_path, "w+", np.int32, (size,))
        fill_split(task, split_rng(seed, task, split), split, size, seen, tokens, lengths)
        info[split] = {"count": size, "max_length": int(lengths.max(initial=0))}
        del tokens, lengths  # flush the memory maps
    return {s: info[s] for s in SPLITS if s in info}


def write_dataset(task: Task, sizes: dict[str, int], seed: int, out: Path) -> dict:
    """Generate one dataset folder at `out`, atomically: a temporary sibling folder is filled and
    renamed at the end, so an interrupted run never leaves a half-written dataset."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    try:
        splits = generate_splits(task, sizes, seed, tmp)
        meta = {
            "task": task.name,
            "n": task.n,
            "options": task.options(),
            "seed": seed,
            "generator_version": GENERATOR_VERSION,
            "vocab": list(task.vocab.tokens),
            "separator": task.separator,
            "unique_chain": task.unique_chain,
            "max_len": task.max_len,
            "dtype": task.vocab.dtype.name,
            "splits": splits,
            "sha256": {p.name: sha256(p) for p in sorted(tmp.glob("*.npy"))},
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def replace_dir(new: Path, target: Path) -> None:
    """Move folder `new` to `target`; an old `target` is removed only once `new` is in place."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-0")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old)


def read_split(task: Task, folder: Path, split: str, mmap: bool = False) -> Batch:
    """One split of a dataset folder as a task Batch (memory-mapped if asked)."""
    return Batch(*read_arrays(folder, split, task.vocab.id(task.separator), mmap))


def remove_abandoned(folder: Path) -> list[Path]:
    """Remove the temporary folders that a killed `write_dataset` or `replace_dir` left in
    `folder` (named after a process that no longer runs); returns what was removed."""
    removed = []
    for path in sorted(Path(folder).glob(".*.tmp-*")) + sorted(Path(folder).glob(".*.old-*")):
        pid = path.name.rsplit("-", 2)[-2] if path.name.count("-") >= 2 else ""
        if path.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tasks_of(spec: GenerateParams, where: str = "") -> list[tuple[Dataset, Task]]:
    """Each dataset of the generate section with its task, checked against the task registry and
    the split sizes; a bad one is a ParamError that names its field (`where`: the file, for that)."""
    out = []
    for dataset in spec.datasets:
        prefix = f"{where}: " if where else ""
        if dataset.task not in TASKS:
            raise ParamError(f"{prefix}{dataset.where.split('.sizes')[0]}: unknown task {dataset.task!r} "
                             f"(known: {', '.join(sorted(TASKS))})")
        try:
            task = make_task(dataset.task, dataset.n, **dataset.options)
            check_sizes(task, spec.sizes)
        except (TaskError, DataError) as err:
            raise ParamError(f"{prefix}{dataset.where}: {err}") from None
        out.append((dataset, task))
    return out
