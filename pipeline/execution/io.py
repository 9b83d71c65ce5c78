"""File-system helpers shared by the stages."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path


class OutputError(OSError):
    """An output path cannot be written."""


def say(line: str) -> None:
    """One line for the person running the stage (stderr, flushed: visible in logs as it happens)."""
    print(line, file=sys.stderr, flush=True)


def check_writable(folder: Path) -> None:
    """Create `folder` if needed and prove a file can be written there, before any work starts."""
    folder = Path(folder)
    try:
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"output path {folder} exists and is not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OutputError:
        raise
    except OSError as err:
        raise OutputError(f"output path {folder} is not writable ({err.strerror or err})") from None
    if not os.access(folder, os.W_OK):
        raise OutputError(f"output path {folder} is not writable")


def check_file_target(path: Path) -> None:
    """An output file's path must not be a folder (or anything but a file) already."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise OutputError(f"output path {path} exists and is not a file")


def write_json(path: Path, data: dict, indent: int = 2) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, indent=indent, sort_keys=True) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically, leaving no temporary file whatever happens."""
    path = Path(path)
    check_file_target(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_temporaries(folder: Path, depth: int = 2) -> None:
    """Remove the temporary files (`.<name>.tmp-*`) that a stage killed while writing left in
    `folder` and its subfolders, and the folders `gather` stages runs in; called before the stage
    writes there (DVC runs one at a time)."""
    folder = Path(folder)
    for pattern in ("*/" * d + ".*.tmp*" for d in range(depth + 1)):
        for path in folder.glob(pattern):
            if path.is_file():
                path.unlink(missing_ok=True)
            elif path.is_dir():
                shutil.rmtree(path, ignore_errors=True)

