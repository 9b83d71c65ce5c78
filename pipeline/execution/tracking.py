"""W&B settings shared by every stage that logs a run."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

WANDB_DIR = Path("wandb")  # outside every DVC output; `wandb sync wandb/wandb/offline-run-*` uploads later


def tracking() -> bool:
    """False under W&B's own switch WANDB_MODE=disabled: then no stage logs to W&B or imports it, so
    wandb need not be installed (a lent GPU machine, whose W&B files would never come back: a shard's
    file holds every run's curve and results)."""
    return os.environ.get("WANDB_MODE", "").lower() != "disabled"


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


class TrackingError(ValueError):
    """W&B is on, and wandb cannot be imported."""


def check_tracking() -> None:
    """Before any work: with W&B on, wandb must be importable. Said at once rather than by every run
    failing in turn (a lent GPU machine's image has no wandb)."""
    if not tracking():
        return
    try:
        found = importlib.util.find_spec("wandb") is not None
    except ValueError:  # in sys.modules as None: its import was blocked
        found = False
    if not found:
        raise TrackingError("wandb is not installed: install it (pip install -e .), or set WANDB_MODE=disabled "
                            "to run without W&B")


def wandb_logger(run, sweep: str, meta: dict, job_type: str, config: dict, run_id: str | None = None):
    """Lightning's W&B logger for one run, or False (Lightning's "no logger") when `tracking()` is off.
    `run_id` makes a resumed training continue the same W&B run instead of starting a second one."""
    if not tracking():
        return False
    from lightning.pytorch.loggers import WandbLogger

    options = wandb_options()
    extra = {"id": run_id} if run_id else {}  # Lightning asks W&B to resume ("allow") a known id
    logger = WandbLogger(
        project=options["project"], group=sweep, job_type=job_type, name=run.id,
        tags=[meta["task"], run.attention, f"n={meta['n']}", f"width={run.width}", f"seed={run.seed}"],
        config=config, save_dir=options["dir"], offline=options["mode"] == "offline", settings=options["settings"],
        **extra,
    )
    # Lightning passes anonymous=None, which W&B >= 0.2x warns about once per process
    logger._wandb_init.pop("anonymous", None)
    return logger
