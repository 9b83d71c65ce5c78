"""Dataset files, and reading them back checked against their recorded checksums.

A dataset folder holds, for each split, `{split}_tokens.npy` (N x W token ids, padded with 0, each
row ending with <eos>) and `{split}_lengths.npy` (N, int32), plus `meta.json` with the task, n,
options, vocabulary, separator, lengths, counts, seed, generator version and the sha256 of every
file. Writing is in `generation.py`; this module needs numpy only (no task code), so that what
training depends on does not include how data is generated.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")
META_KEYS = ("task", "n", "options", "vocab", "separator", "unique_chain", "max_len", "splits", "sha256")


class DataError(ValueError):
    """A dataset cannot be made or read as asked; the message names the file."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_meta(folder: Path) -> dict:
    folder = Path(folder)
    path = folder / "meta.json"
    if not folder.is_dir():
        raise DataError(f"{folder}: no such dataset folder (run the generate stage)")
    if not path.is_file():
        raise DataError(f"{path}: missing, so {folder} is not a complete dataset (run the generate stage again)")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    missing = [k for k in META_KEYS if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise DataError(f"{path}: not a dataset's meta.json (missing {', '.join(missing)})")
    return meta


def verify(folder: Path) -> dict:
    """The dataset's meta.json, once every file it lists matches its recorded sha256 (and every
    split's files are listed); otherwise a DataError that names the file."""
    folder = Path(folder)
    meta = read_meta(folder)
    expected = {f"{s}_{kind}.npy" for s in meta["splits"] for kind in ("tokens", "lengths")}
    unlisted = sorted(expected - set(meta["sha256"]))
    if unlisted:
        raise DataError(f"{folder / 'meta.json'}: no checksum recorded for {unlisted[0]}")
    for name, digest in sorted(meta["sha256"].items()):
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path}: missing (listed in {folder / 'meta.json'})")
        if sha256(path) != digest:
            raise DataError(f"{path}: does not match the sha256 recorded in meta.json (a changed or truncated "
                            "file; run the generate stage again)")
    return meta


def separator_id(meta: dict) -> int:
    return meta["vocab"].index(meta["separator"])


def read_arrays(folder: Path, split: str, separator: int, mmap: bool = False) -> tuple[np.ndarray, ...]:
    """Tokens, lengths and prompt lengths (tokens up to and including the first separator) of one split."""
    mode = "r" if mmap else None
    try:
        tokens = np.load(Path(folder) / f"{split}_tokens.npy", mmap_mode=mode)
        lengths = np.load(Path(folder) / f"{split}_lengths.npy", mmap_mode=mode)
    except (ValueError, EOFError) as err:  # a truncated or foreign file
        raise DataError(f"{folder}/{split}_*.npy: cannot be read ({err})") from None
    prompts = np.argmax(tokens == separator, axis=1) + 1
    return tokens, lengths, prompts.astype(np.int32)
