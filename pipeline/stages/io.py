"""File-system checks shared by the stages."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


class OutputError(OSError):
    """An output path cannot be written."""


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


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
