"""Lightning training of one run: the data module over a generated dataset, the module with its
loss, metrics, optimiser and generation-based evaluation.

Loss: next-token cross-entropy on the chain-of-thought and answer tokens only (every token after the
first separator, <eos> included), as in the public code.
Metrics (torchmetrics objects, accumulated over the epoch, not averages of per-batch floats):
- token accuracy on those tokens (teacher forcing, argmax);
- exact match: every chain and answer token right (teacher forcing; equals greedy decoding of the
  whole chain where the chain is unique);
- answer accuracy: the answer after free greedy generation from the prompt with the incremental
  decoder (the paper's metric for arithmetic, whose chain is not unique).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from .data import read_meta, read_split
from .model import DecoderTransformer, ModelConfig
from .tasks import make_task

IGNORE = -100


@dataclass
class Split:
    tokens: torch.Tensor  # (N, W) int64
    lengths: torch.Tensor  # (N,)
    prompts: torch.Tensor  # (N,) tokens up to and including the first separator

    def to(self, device) -> Split:
        return Split(self.tokens.to(device), self.lengths.to(device), self.prompts.to(device))

    def __len__(self) -> int:
        return len(self.lengths)


class Batches:
    """Batches cut from tensors that already live on the training device: no per-sample Python.

    Each batch is trimmed to its longest sequence. Shuffled with its own seeded generator, so an
    epoch's order depends on (seed, epoch) only.
    """

    def __init__(self, split: Split, batch_size: int, shuffle: bool, seed: int = 0) -> None:
        self.split, self.batch_size, self.shuffle, self.seed = split, batch_size, shuffle, seed
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(len(self.split) / self.batch_size)

    def __iter__(self):
        n = len(self.split)
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=gen).to(self.split.tokens.device)
            self.epoch += 1
        else:
            order = torch.arange(n, device=self.split.tokens.device)
        for start in range(0, n, self.batch_size):
            rows = order[start : start + self.batch_size]
            lengths = self.split.lengths[rows]
            width = int(lengths.max())
            yield self.split.tokens[rows, :width], lengths, self.split.prompts[rows]


class ChainDataModule(L.LightningDataModule):
    def __init__(self, folder: Path, batch_size: int, eval_batch_size: int = 256, seed: int = 0) -> None:
        super().__init__()
        self.folder, self.batch_size, self.eval_batch_size, self.seed = Path(folder), batch_size, eval_batch_size, seed
        self.meta = read_meta(self.folder)
        self.task = make_task(self.meta["task"], self.meta["n"], **self.meta["options"])
        self.splits: dict[str, Split] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        for split in ("train", "val", "test"):
            batch = read_split(self.task, self.folder, split)
            self.splits[split] = Split(*(torch.from_numpy(a.astype(np.int64))
                                         for a in (batch.tokens, batch.lengths, batch.prompt_lengths)))

    def place(self, device) -> None:
        """Move every split to the training device once (called by the module at fit start)."""
        self.splits = {k: v.to(device) for k, v in self.splits.items()}

    def train_dataloader(self):
        return Batches(self.splits["train"], self.batch_size, shuffle=True, seed=self.seed)

    def val_dataloader(self):
        return Batches(self.splits["val"], self.eval_batch_size, shuffle=False)

    def test_dataloader(self):
        return Batches(self.splits["test"], self.eval_batch_size, shuffle=False)


def chain_targets(tokens: torch.Tensor, lengths: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """Targets for inputs tokens[:, :-1]: the next token where it belongs to the chain or answer
    (position >= prompt length and < sequence length), IGNORE elsewhere."""
    target = tokens[:, 1:].clone()
    pos = torch.arange(1, tokens.shape[1], device=tokens.device)[None, :]
    keep = (pos >= prompts[:, None]) & (pos < lengths[:, None])
    return target.masked_fill(~keep, IGNORE)


def exact_match(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per sequence: every graded token (target != IGNORE) predicted right."""
    return ((pred == target) | (target == IGNORE)).all(dim=1)


def generated_answer(out: torch.Tensor, prompt_len: int, eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The answer of each generated row (the token before its first generated <eos>) and whether
    there is one (an <eos> was generated after at least one token)."""
    is_eos = out[:, prompt_len:] == eos_id
    first = is_eos.int().argmax(1) + prompt_len
    valid = is_eos.any(1) & (first > prompt_len)
    answer = out[torch.arange(len(out), device=out.device), (first - 1).clamp(min=0)]
    return answer, valid


class ChainModule(L.LightningModule):
    def __init__(self, model: dict, task: dict, optim: dict, eos_id: int, unique_chain: bool,
                 val_generation: int = 256) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = DecoderTransformer(ModelConfig(**model))
        self.eos_id, self.unique_chain, self.val_generation = eos_id, unique_chain, val_generation
        vocab = model["vocab_size"]
        for stage in ("val", "test"):
            setattr(self, f"{stage}_token_acc", MulticlassAccuracy(vocab, average="micro", ignore_index=IGNORE))
            setattr(self, f"{stage}_exact", MeanMetric())
            setattr(self, f"{stage}_answer", MeanMetric())
        self.train_token_acc = MulticlassAccuracy(vocab, average="micro", ignore_index=IGNORE)
        self.generated = 0
        self.test_generation: int | None = None  # set by the evaluate stage

    # --- hooks ---------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        self.trainer.datamodule.place(self.device)

    def on_test_start(self) -> None:
        self.trainer.datamodule.place(self.device)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(tokens)

    def _teacher_forced(self, batch):
        tokens, lengths, prompts = batch
        logits = self.model(tokens[:, :-1])
        target = chain_targets(tokens, lengths, prompts)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=IGNORE)
        return logits, target, loss

    def training_step(self, batch, batch_idx):
        logits, target, loss = self._teacher_forced(batch)
        self.train_token_acc(logits.argmax(-1), target)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/token_acc", self.train_token_acc, on_step=False, on_epoch=True)
        return loss

    def _evaluate(self, batch, stage: str, generate: bool) -> None:
        logits, target, loss = self._teacher_forced(batch)
        pred = logits.argmax(-1)
        getattr(self, f"{stage}_token_acc")(pred, target)
        getattr(self, f"{stage}_exact").update(exact_match(pred, target).float())
        if generate:
            getattr(self, f"{stage}_answer").update(self.answer_correct(*batch).float())
        self.log(f"{stage}/loss", loss)

    def _generate_now(self, batch, limit: int | None) -> bool:
        """Answer accuracy by generation on the first `limit` samples only: generation is slow."""
        go = limit is None or self.generated < limit
        self.generated += len(batch[0]) if go else 0
        return go

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val", self._generate_now(batch, self.val_generation))

    def on_validation_epoch_start(self) -> None:
        self.generated = 0

    def on_test_epoch_start(self) -> None:
        self.generated = 0

    def on_validation_epoch_end(self) -> None:
        exact = self.val_exact.compute() if self.val_exact.update_count else torch.tensor(0.0)
        answer = self.val_answer.compute() if self.val_answer.update_count else torch.tensor(0.0)
        self.log("val/token_acc", self.val_token_acc.compute())
        self.log("val/exact_match", exact)
        self.log("val/answer_acc", answer)
        # what early stopping and the best checkpoint follow: the graded accuracy of the task
        self.log("val/acc", exact if self.unique_chain else answer, prog_bar=True)
        for m in (self.val_token_acc, self.val_exact, self.val_answer):
            m.reset()

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test", self._generate_now(batch, self.test_generation))

    def on_test_epoch_end(self) -> None:
        self.log("test/token_acc", self.test_token_acc.compute())
        self.log("test/exact_match", self.test_exact.compute())
        self.log("test/answer_acc", self.test_answer.compute())
        self.log("test/generated", float(self.generated))

    @torch.no_grad()
    def answer_correct(self, tokens: torch.Tensor, lengths: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """Free greedy generation from each prompt (grouped by prompt length); True where the token
        before the generated <eos> equals the true answer."""
        rows = torch.arange(len(lengths), device=tokens.device)
        answer = tokens[rows, lengths - 2]
        correct = torch.zeros(len(lengths), dtype=torch.bool, device=tokens.device)
        was_training = self.model.training
        self.model.eval()
        for p in torch.unique(prompts).tolist():
            group = (prompts == p).nonzero().squeeze(1)
            out = self.model.generate(tokens[group, :p], self.model.cfg.max_len - p, self.eos_id)
            got, valid = generated_answer(out, p, self.eos_id)
            correct[group] = valid & (got == answer[group])
        self.model.train(was_training)
        return correct

    # --- optimiser -----------------------------------------------------------------------------
    def configure_optimizers(self):
        opt = self.hparams.optim
        decay, no_decay = [], []
        for param in self.model.parameters():
            # no weight decay on biases and LayerNorm parameters (the 1-d ones), as the public code
            (no_decay if param.ndim < 2 else decay).append(param)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": opt["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
            lr=opt["lr"], betas=(0.9, 0.99),
        )
        total = max(1, self.trainer.max_steps)
        warmup = min(opt["warmup_steps"], total // 2)

        def schedule(step: int) -> float:  # linear warm-up, then linear decay to 10%
            if step < warmup:
                return (step + 1) / warmup
            return max(0.1, 1.0 - 0.9 * (step - warmup) / max(1, total - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
