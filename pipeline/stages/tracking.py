"""W&B settings shared by every stage that logs a run."""

from __future__ import annotations

import os
from pathlib import Path

WANDB_DIR = Path("wandb")  # outside every DVC output; `wandb sync wandb/wandb/offline-run-*` uploads later


def wandb_options() -> dict:
    """Offline unless WANDB_MODE=online (no network, no account, never a prompt), silent, into
    ./wandb. Passed to wandb.init rather than set in os.environ, so nothing leaks into other runs or
    child processes; the folder is absolute because W&B's service process may have another cwd."""
    import wandb

    WANDB_DIR.mkdir(parents=True, exist_ok=True)
    return {"project": os.environ.get("WANDB_PROJECT", "efficient-transformers-dp"),
            "dir": str(WANDB_DIR.resolve()),
            "mode": "online" if os.environ.get("WANDB_MODE") == "online" else "offline",
            "settings": wandb.Settings(silent=True)}
