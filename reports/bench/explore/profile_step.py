"""Where a training step's time goes: torch.profiler over 10 steps of the train stage's training
(`training.fit`) on ED n=12 (L=212), batch 512. Exploration for issue 9; prints the top operators.

    python reports/bench/explore/profile_step.py WIDTH ATTENTION COMPILE
"""

import sys
import tempfile
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from pipeline.bench.train import dataset, settings
from pipeline.data import verify
from pipeline.stages.runtime import quiet
from pipeline.training import fit

CUDA = torch.cuda.is_available()


def sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


class Profile(Callback):
    def __init__(self, start: int, steps: int) -> None:
        self.start, self.stop, self.prof = start, start + steps, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.start:
            sync()
            kinds = torch.profiler.ProfilerActivity
            activities = [kinds.CPU] + ([kinds.CUDA] if CUDA else [])
            self.prof = torch.profiler.profile(activities=activities)
            self.prof.__enter__()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step == self.stop:
            sync()
            self.prof.__exit__(None, None, None)


width, attention, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
quiet()
with tempfile.TemporaryDirectory() as tmp:
    folder = dataset(Path(tmp), 212, 20_000 if CUDA else 600)
    meta = verify(folder)
    prof = Profile(15, 10)
    fit(folder, meta, Path(tmp) / "run", {"attention": attention, "width": width, "seed": 0},
        settings(512 if CUDA else 8, 30, mode), callbacks=[prof])
    table = prof.prof.key_averages()
    print(table.table(sort_by="cuda_time_total" if CUDA else "cpu_time_total", row_limit=25, max_name_column_width=60))
    print(table.table(sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=60))
