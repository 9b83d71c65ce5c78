"""Where a result comes from: the code revision."""

from __future__ import annotations

import os
import re
import subprocess


def git_rev() -> str:
    """The commit the code runs from ("unknown" outside a git checkout), "+dirty" if the package or
    pyproject.toml differ from it."""
    if os.environ.get("PIPELINE_GIT_REV"):  # a copy of the tree without .git (e.g. a remote GPU machine)
        return os.environ["PIPELINE_GIT_REV"]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        # only the code counts: outputs that a running `dvc repro` rewrites must not make it "dirty"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "pipeline",
                                "pyproject.toml"], capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def short_rev(rev: str, digits: int = 12) -> str:
    """A commit hash cut to its first `digits` hex digits, "+dirty" kept; a shorter one, or anything
    that is no hash ("unknown"), as it is."""
    return re.sub(rf"^([0-9a-f]{{{digits}}})[0-9a-f]*", r"\1", rev)
