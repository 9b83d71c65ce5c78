"""Lightning callbacks of the train and evaluate stages: progress lines, a run's validation curve and
the clock of a training segment. Apart from runtime.py because they import Lightning, which the
stages load only once they train or evaluate."""

from __future__ import annotations

import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from .io import say, write_json

PROGRESS_EVERY = 30.0  # seconds between progress lines of one run, in a terminal or a log file alike


class Progress(Callback):
    """A line now and then while a run trains or is evaluated: where it is and its latest accuracy."""

    def __init__(self, label: str, total_steps: int | None = None, every: float | None = None) -> None:
        self.label, self.total = label, total_steps
        self.every = PROGRESS_EVERY if every is None else every
        self.start = self.last = time.perf_counter()

    def _maybe(self, text: str) -> None:
        now = time.perf_counter()
        if now - self.last >= self.every:
            say(f"{self.label}: {text} ({now - self.start:.0f}s)")
            self.last = now

    def on_validation_end(self, trainer, module) -> None:
        if trainer.sanity_checking:
            return
        acc = trainer.callback_metrics.get("val/acc")
        self._maybe(f"step {trainer.global_step}/{self.total}, val acc {float(acc):.4f}" if acc is not None
                    else f"step {trainer.global_step}/{self.total}")

    def on_train_batch_end(self, trainer, *args) -> None:
        self._maybe(f"step {trainer.global_step}/{self.total}")

    def on_test_batch_end(self, trainer, module, outputs, batch, batch_idx, *args) -> None:
        self._maybe(f"test batch {batch_idx + 1}/{trainer.num_test_batches[0]}")


class Curve(Callback):
    """A run's validation curve: the `keys` of each validation against training sequences seen,
    written with its result (train.json, then results/). Kept in the run's checkpoints, so that a
    resumed run's curve is an uninterrupted one's (Lightning runs checkpointing callbacks last, so a
    checkpoint written at a validation holds that validation's point). `on_point(points)`: called
    after each (the schedule study keeps the curve so far on disk)."""

    def __init__(self, batch_size: int, keys: tuple[str, ...] = ("val/acc", "val/loss"), on_point=None) -> None:
        self.batch_size, self.keys, self.on_point, self.points = batch_size, keys, on_point, []

    def on_validation_end(self, trainer, module) -> None:
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        self.points.append({"step": trainer.global_step, "sequences": trainer.global_step * self.batch_size,
                            **{k.split("/")[1]: round(float(m[k]), 6) for k in self.keys if k in m}})
        if self.on_point is not None:
            self.on_point(self.points)

    def state_dict(self) -> dict:
        return {"points": self.points}

    def load_state_dict(self, state: dict) -> None:
        self.points = list(state["points"])


class SegmentClock(Callback):
    """Keeps the time of the current training segment in runs/<run>/resume.json up to date (every few
    seconds and at every checkpoint), so that a killed segment still counts in train_seconds; on a
    GPU, with the peak memory the run's process has allocated in any of its segments (`peak_gpu_gib`),
    which is what decides how many runs fit on one GPU at once."""

    def __init__(self, path: Path, state: dict, every: float = 2.0) -> None:
        self.path, self.state, self.every = path, state, every
        self.start = self.last = None
        self.cuda = False

    def on_train_start(self, *args) -> None:  # training time: setup and W&B start are not counted
        import torch

        self.cuda = torch.cuda.is_available()
        if self.cuda:  # from what is allocated now (model, optimiser, data on the device)
            torch.cuda.reset_peak_memory_stats()
        self.start = self.last = time.perf_counter()

    def tick(self, force: bool = False) -> None:
        now = time.perf_counter()
        if self.start is not None and (force or now - self.last >= self.every):
            self.state["segments"][-1] = round(now - self.start, 3)
            if self.cuda:
                import torch

                peak = torch.cuda.max_memory_allocated() / 2**30
                self.state["peak_gpu_gib"] = round(max(peak, self.state.get("peak_gpu_gib") or 0.0), 3)
            write_json(self.path, self.state)
            self.last = now

    def on_train_batch_end(self, *args) -> None:
        self.tick()

    def on_save_checkpoint(self, *args) -> None:
        self.tick(force=True)
