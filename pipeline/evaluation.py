"""Evaluation of a finished run on its test split: token accuracy, exact match and answer accuracy
by free generation (`grading.py`), as torchmetrics objects over the whole split.

The evaluation key hashes this module's import closure, so a change here re-evaluates every run
and retrains none (training does not import it).
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from .grading import IGNORE, answer_correct, exact_match
from .training import ChainDataModule, ChainModule


class TestedModule(ChainModule):
    """A trained run's module with the test hooks."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        vocab = self.hparams.model["vocab_size"]
        self.test_token_acc = MulticlassAccuracy(vocab, average="micro", ignore_index=IGNORE)
        self.test_exact, self.test_answer = MeanMetric(), MeanMetric()
        self.test_generation: int | None = None  # answer accuracy on this many test samples (None: all)

    def on_test_start(self) -> None:
        self.trainer.datamodule.place(self.device)

    def on_test_epoch_start(self) -> None:
        self.generated = 0
        self.generation_seconds = 0.0  # wall time of free generation: where a GPU evaluation's time goes

    def test_step(self, batch, batch_idx):
        logits, target, _ = self.teacher_forced(batch)
        pred = logits.argmax(-1)
        self.test_token_acc(pred, target)
        self.test_exact.update(exact_match(pred, target).float())
        if self._generate_now(batch, self.test_generation):
            start = time.perf_counter()  # generation syncs at every token, so no extra sync is needed
            self.test_answer.update(answer_correct(self.model, *batch, self.eos_id).float())
            self.generation_seconds += time.perf_counter() - start

    def on_test_epoch_end(self) -> None:
        answer = self.test_answer.compute() if self.test_answer.update_count else torch.tensor(float("nan"))
        self.log("test/token_acc", self.test_token_acc.compute())
        self.log("test/exact_match", self.test_exact.compute())
        self.log("test/answer_acc", answer)
        self.log("test/generated", float(self.generated))


def evaluate(checkpoint: Path, folder: Path, meta: dict, batch_size: int, generation_samples: int | None,
             seed: int, logger=False, callbacks=()) -> dict:
    """Test scores of the weights in `checkpoint` on the dataset at `folder` (checked by the caller), and
    the seconds spent in free generation (`generation_seconds`, a timing, not a score)."""
    module = TestedModule.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    module.test_generation = generation_samples
    dm = ChainDataModule(folder, meta, batch_size, eval_batch_size=batch_size)
    gpu = torch.cuda.is_available()
    L.seed_everything(seed, verbose=False)
    trainer = L.Trainer(accelerator="auto", devices=1, precision="bf16-mixed" if gpu else "32-true", logger=logger,
                        callbacks=list(callbacks), enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False)
    scores = trainer.test(module, dm, verbose=False)[0]
    return {"token_acc": scores["test/token_acc"], "exact_match": scores["test/exact_match"],
            "answer_acc": scores["test/answer_acc"], "answer_samples": int(scores["test/generated"]),
            "graded_acc": scores["test/exact_match"] if meta["unique_chain"] else scores["test/answer_acc"],
            "generation_seconds": round(module.generation_seconds, 3)}
