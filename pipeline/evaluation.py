"""Evaluation of a finished run on its test split: token accuracy, exact match and answer accuracy
by free generation (`grading.py`), as torchmetrics objects over the whole split; and where the errors
are: exact match by sequence length, wrong tokens by position (a model that stops on a shelf below
100% fails some chains; these say which).

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
        # per sequence length: [exact, sequences]; per target position: [wrong, graded] (plain sums:
        # one device, one pass)
        self.by_length = torch.zeros(2, self.hparams.model["max_len"] + 1, dtype=torch.long)
        self.by_position = torch.zeros(2, self.hparams.model["max_len"], dtype=torch.long)

    def on_test_start(self) -> None:
        self.trainer.datamodule.place(self.device)
        self.by_length, self.by_position = self.by_length.to(self.device), self.by_position.to(self.device)

    def on_test_epoch_start(self) -> None:
        self.generated = 0
        self.generation_seconds = 0.0  # wall time of free generation: where a GPU evaluation's time goes

    def test_step(self, batch, batch_idx):
        logits, target, _ = self.teacher_forced(batch)
        pred = logits.argmax(-1)
        self.test_token_acc(pred, target)
        exact = exact_match(pred, target)
        self.test_exact.update(exact.float())
        lengths, graded = batch[1], target != IGNORE
        self.by_length[0].index_add_(0, lengths, exact.long())
        self.by_length[1].index_add_(0, lengths, torch.ones_like(lengths, dtype=torch.long))
        self.by_position[0, :target.shape[1]] += ((pred != target) & graded).sum(0)
        self.by_position[1, :target.shape[1]] += graded.sum(0)
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
    by_length, by_position = module.by_length.tolist(), module.by_position.tolist()
    return {"token_acc": scores["test/token_acc"], "exact_match": scores["test/exact_match"],
            "answer_acc": scores["test/answer_acc"], "answer_samples": int(scores["test/generated"]),
            "graded_acc": scores["test/exact_match"] if meta["unique_chain"] else scores["test/answer_acc"],
            "exact_by_length": _nonzero(by_length, ("length", "exact", "sequences")),
            "wrong_by_position": _nonzero(by_position, ("position", "wrong", "graded")),
            "generation_seconds": round(module.generation_seconds, 3)}


def _nonzero(counts: list[list[int]], names: tuple[str, str, str]) -> dict[str, list[int]]:
    """Counts [hits, total] by index as three lists (index, hits, total), where total > 0."""
    kept = [i for i, total in enumerate(counts[1]) if total]
    return {names[0]: kept, names[1]: [counts[0][i] for i in kept], names[2]: [counts[1][i] for i in kept]}
