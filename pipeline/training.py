"""Lightning training of one run: the data module over a generated dataset, the module with its
loss, validation, optimiser and checkpointed state, and `fit`, which trains one run into a folder.

Everything that decides a trained run's weights is reachable from this module, and nothing else
is: the run key hashes its import closure (`deps.code_hash("pipeline.training")`). Logging, progress
and bookkeeping live in the train stage, evaluation on the test split in `evaluation.py`, FLOPs in
`cost.py`, so none of them retrains a run.

Loss: next-token cross-entropy on the chain-of-thought and answer tokens only (every token after the
first separator, <eos> included), as in the public code. Validation (torchmetrics objects,
accumulated over the whole split): token accuracy, exact match, answer accuracy by generation
(`grading.py`); `val/acc` is the task's graded accuracy, which early stopping and the best
checkpoint follow.

Resuming is exact: one Lightning epoch is `val_every` steps of an endless, seeded stream of batches
whose position is the global step, every checkpoint is taken after a validation (an epoch end, the
case Lightning restores cleanly), and it carries the random number generators' states. A killed run
resumed from its last checkpoint ends with the weights of an uninterrupted one (CPU, deterministic).
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from .data import read_arrays, separator_id, sha256
from .grading import IGNORE, answer_correct, chain_targets, exact_match
from .model import DecoderTransformer, ModelConfig

FINAL = "model.ckpt"  # a finished run's weights (the best validation), without trainer state or paths
KEEP = ("epoch", "global_step", "pytorch-lightning_version", "state_dict", "hparams_name", "hyper_parameters")


@dataclass
class Split:
    tokens: torch.Tensor  # (N, W) int64
    lengths: torch.Tensor  # (N,)
    prompts: torch.Tensor  # (N,) tokens up to and including the first separator

    def to(self, device) -> Split:
        return Split(self.tokens.to(device), self.lengths.to(device), self.prompts.to(device))

    def __len__(self) -> int:
        return len(self.lengths)

    def rows(self, rows: torch.Tensor, trim: bool = True):
        """Batch of the given rows, trimmed to its longest sequence (or at the split's full width:
        one shape for every training batch, which compiled code and CUDA graphs need; the padding
        is causally after every graded token and changes no loss)."""
        lengths = self.lengths[rows]
        tokens = self.tokens[rows, : int(lengths.max())] if trim else self.tokens[rows]
        return tokens, lengths, self.prompts[rows]


class Batches:
    """The split in order, in batches cut from tensors on the training device (no per-sample Python)."""

    def __init__(self, split: Split, batch_size: int) -> None:
        self.split, self.batch_size = split, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.split) / self.batch_size)

    def __iter__(self):
        order = torch.arange(len(self.split), device=self.split.tokens.device)
        for start in range(0, len(self.split), self.batch_size):
            yield self.split.rows(order[start : start + self.batch_size])


class TrainStream:
    """Training batches as an endless stream: batch s of the stream is batch s mod P of pass s // P
    over the training split (P whole batches a pass: the few samples left over are in the next
    pass's batches, since each pass is shuffled by its own generator seeded with (seed, pass)).
    Every batch has the same shape. One iteration yields `epoch_steps` batches from the position
    `start()` (the global step), so a resumed run continues exactly where its checkpoint was taken."""

    def __init__(self, split: Split, batch_size: int, seed: int, epoch_steps: int, start, rank: int = 0,
                 world: int = 1) -> None:
        self.split, self.batch_size, self.seed = split, batch_size, seed
        self.epoch_steps, self.start = epoch_steps, start
        self.rank, self.world = rank, world
        if len(split) < batch_size:
            raise ValueError(f"batch size {batch_size} is larger than the training split ({len(split)} samples)")
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} is not divisible by the {world} processes of the training")
        self.per_pass = len(split) // batch_size
        self._order: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        return self.epoch_steps

    def order(self, data_pass: int) -> torch.Tensor:
        if self._order is None or self._order[0] != data_pass:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + data_pass)
            self._order = (data_pass, torch.randperm(len(self.split), generator=gen).to(self.split.tokens.device))
        return self._order[1]

    def __iter__(self):
        first = self.start()
        for step in range(first, first + self.epoch_steps):
            data_pass, index = divmod(step, self.per_pass)
            rows = self.order(data_pass)[index * self.batch_size : (index + 1) * self.batch_size]
            if self.world == 1:
                yield self.split.rows(rows, trim=False)
                continue
            # one process of a DDP training: its slice of the global batch, and the factor that
            # makes the processes' averaged gradients those of the global batch's mean loss
            graded = (self.split.lengths[rows] - self.split.prompts[rows]).sum()
            share = self.batch_size // self.world
            yield (*self.split.rows(rows[self.rank * share : (self.rank + 1) * share], trim=False),
                   self.world / graded.clamp(min=1).float())


class ChainDataModule(L.LightningDataModule):
    """The splits of one dataset folder (checked against its checksums by the caller: `data.verify`)."""

    def __init__(self, folder: Path, meta: dict, batch_size: int, eval_batch_size: int = 256, seed: int = 0,
                 epoch_steps: int = 1) -> None:
        super().__init__()
        self.folder, self.meta = Path(folder), meta
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.seed, self.epoch_steps = seed, epoch_steps
        self.splits: dict[str, Split] = {}

    # the splits each of Lightning's stages reads: evaluation loads the test split alone, not the
    # training split (1M samples in the paper profile) in every evaluating process
    STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}

    def setup(self, stage: str | None = None) -> None:
        for split in self.STAGE_SPLITS.get(stage, ("train", "val", "test")):
            if split not in self.splits:
                arrays = read_arrays(self.folder, split, separator_id(self.meta))
                self.splits[split] = Split(*(torch.from_numpy(np.asarray(a).astype(np.int64)) for a in arrays))

    def place(self, device) -> None:
        """Move every split to the training device once (called by the module at fit start)."""
        self.splits = {k: v.to(device) for k, v in self.splits.items()}

    def train_dataloader(self):
        return TrainStream(self.splits["train"], self.batch_size, self.seed, self.epoch_steps,
                           lambda: self.trainer.global_step, self.trainer.global_rank, self.trainer.world_size)

    def val_dataloader(self):
        return Batches(self.splits["val"], self.eval_batch_size)

    def test_dataloader(self):
        return Batches(self.splits["test"], self.eval_batch_size)


class ChainModule(L.LightningModule):
    def __init__(self, model: dict, task: dict, optim: dict, eos_id: int, unique_chain: bool,
                 val_generation: int = 256) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = DecoderTransformer(ModelConfig(**model))
        self.eos_id, self.unique_chain, self.val_generation = eos_id, unique_chain, val_generation
        vocab = model["vocab_size"]
        self.val_token_acc = MulticlassAccuracy(vocab, average="micro", ignore_index=IGNORE)
        self.val_exact, self.val_answer = MeanMetric(), MeanMetric()
        self.generated = 0
        self.nonfinite_from: int | None = None  # the first validation interval with a non-finite loss
        self.diverged: str | None = None  # why training stopped early, if it diverged
        self._bad = None  # device flag: a non-finite loss since the last validation (no sync per step)

    compile: str = "none"  # how training steps run on a GPU (`COMPILE`); set by `fit`, not a hyperparameter

    def on_fit_start(self) -> None:
        self.trainer.datamodule.place(self.device)
        self._train_loss = compiled_loss(self.chain_loss, self.compile if self.device.type == "cuda" else "none")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(tokens)

    def teacher_forced(self, batch):
        tokens, lengths, prompts = batch
        logits = self.model(tokens[:, :-1])
        target = chain_targets(tokens, lengths, prompts)
        return logits, target, chain_loss(logits, target)

    def chain_loss(self, tokens: torch.Tensor, lengths: torch.Tensor, prompts: torch.Tensor,
                   scale: torch.Tensor | None = None) -> torch.Tensor:
        """The training loss of a batch: what a training step compiles (forward, then backward).
        `scale` (DDP): the summed loss times this, instead of the mean (`TrainStream`)."""
        return chain_loss(self.model(tokens[:, :-1]), chain_targets(tokens, lengths, prompts), scale)

    def training_step(self, batch, batch_idx):
        if self.compile in GRAPHED:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs are done with
        loss = self._train_loss(*batch)
        if self.compile in GRAPHED:
            loss = loss.clone()  # a graph's output is overwritten by its next replay; Lightning keeps this
        bad = ~torch.isfinite(loss.detach())
        self._bad = bad if self._bad is None else self._bad | bad
        self.log("train/loss", loss)
        return loss

    # --- validation ------------------------------------------------------------------------------
    def _generate_now(self, batch, limit: int | None) -> bool:
        """Answer accuracy by generation on the first `limit` samples only: generation is slow."""
        go = limit is None or self.generated < limit
        self.generated += len(batch[0]) if go else 0
        return go

    def on_validation_epoch_start(self) -> None:
        self.generated = 0
        if self._bad is not None and bool(self._bad):  # one sync per validation, not per step
            low = self.trainer.global_step - self.trainer.num_training_batches
            self.diverged = f"non-finite training loss between steps {max(low, 0) + 1} and {self.trainer.global_step}"
            self.trainer.should_stop = True
        self._bad = None

    def validation_step(self, batch, batch_idx):
        logits, target, loss = self.teacher_forced(batch)
        pred = logits.argmax(-1)
        self.val_token_acc(pred, target)
        self.val_exact.update(exact_match(pred, target).float())
        # free generation only where it grades (a chain that is not unique: arithmetic); elsewhere
        # exact match is greedy decoding already, and generating repeats it one token at a time
        if not self.unique_chain and self._generate_now(batch, self.val_generation):
            self.val_answer.update(answer_correct(self.model, *batch, self.eos_id).float())
        self.log("val/loss", loss)

    def on_validation_epoch_end(self) -> None:
        exact = self.val_exact.compute() if self.val_exact.update_count else torch.tensor(0.0)
        answer = self.val_answer.compute() if self.val_answer.update_count else torch.tensor(0.0)
        self.log("val/token_acc", self.val_token_acc.compute())
        self.log("val/exact_match", exact)
        self.log("val/answer_acc", answer)
        acc = exact if self.unique_chain else answer
        if self.diverged:  # a diverged model is never the best checkpoint
            acc = torch.tensor(-1.0)
        self.log("val/acc", acc)
        for m in (self.val_token_acc, self.val_exact, self.val_answer):
            m.reset()

    # --- what a checkpoint carries beyond Lightning's own state ------------------------------------
    # (tensors, numbers and lists only, so that Lightning's weights-only loading accepts them)
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        _, keys, pos, has_gauss, gauss = np.random.get_state()
        version, state, _ = random.getstate()
        checkpoint["rng"] = {"torch": torch.get_rng_state(),
                             "numpy": [torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
                             "python": [version, list(state)],
                             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
        checkpoint["diverged"] = self.diverged

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        rng = checkpoint.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            keys, pos, has_gauss, gauss = rng["numpy"]
            np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
            random.setstate((rng["python"][0], tuple(rng["python"][1]), None))
            if rng["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
        self.diverged = checkpoint.get("diverged")

    # --- optimiser -----------------------------------------------------------------------------
    def configure_optimizers(self):
        opt = self.hparams.optim
        optimizer = adamw(self.model, opt["lr"], opt["weight_decay"], fused=self.device.type == "cuda")
        total = max(1, self.trainer.max_steps)
        schedule = Schedule(total, opt["warmup_steps"], round(opt["decay_fraction"] * total))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_before_optimizer_step(self, optimizer) -> None:
        # clipped here, not by the Trainer: Lightning refuses to clip for a fused optimizer (it
        # cannot know that bf16 needs no unscaling); this is the same call the Trainer would make
        if self.hparams.optim.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.hparams.optim["grad_clip"])


def adamw(model: torch.nn.Module, lr: float | torch.Tensor, weight_decay: float, fused: bool,
          capturable: bool = False) -> torch.optim.AdamW:
    """The training optimiser: no weight decay on biases and LayerNorm parameters (the 1-d ones), as
    the public code; `fused` (a GPU): one kernel for every tensor; `capturable`: safe to record in a
    CUDA graph (then `lr` is a device tensor)."""
    decay, no_decay = [], []
    for param in model.parameters():
        (no_decay if param.ndim < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99), fused=fused, capturable=capturable)


@dataclass(frozen=True)
class Schedule:
    """Learning-rate factor at a step: linear warm-up over `warmup` steps, constant, then a linear
    decay to 10% over the last `decay` steps of `total` (train.decay_fraction of them; decay = 0:
    constant to the end; decay >= total - warmup: decay from the end of warm-up on)."""

    total: int
    warmup: int
    decay: int

    def __call__(self, step: int) -> float:
        warmup = min(self.warmup, self.total // 2)
        start = max(warmup, self.total - self.decay)
        if step < warmup:
            return (step + 1) / warmup
        if step < start:
            return 1.0
        return max(0.1, 1.0 - 0.9 * (step - start) / max(1, self.total - start))


def chain_loss(logits: torch.Tensor, target: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    flat = logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1)
    if scale is None:
        return F.cross_entropy(*flat, ignore_index=IGNORE)
    return F.cross_entropy(*flat, ignore_index=IGNORE, reduction="sum") * scale


# How a training step runs on a GPU (train.compile; the CPU always runs eagerly, the same function):
# none: eager kernels; cudagraphs: the eager kernels of forward and backward replayed as CUDA graphs
# (no kernel compilation, removes launch overhead); inductor: fused, compiled kernels (torch.compile);
# inductor-cudagraphs: compiled kernels replayed as CUDA graphs (torch.compile's reduce-overhead);
# max-autotune: the same, with matrix products chosen by timing Triton templates against cuBLAS,
# which can fuse the elementwise work around them (minutes of start-up, cached on disk by shape).
COMPILE = ("none", "cudagraphs", "inductor", "inductor-cudagraphs", "max-autotune")
GRAPHED = ("cudagraphs", "inductor-cudagraphs", "max-autotune")
# the torch.compile mode of each inductor setting
INDUCTOR = {"inductor": "default", "inductor-cudagraphs": "reduce-overhead", "max-autotune": "max-autotune"}


def compiled_loss(loss, mode: str):
    if mode == "none":
        return loss
    # a process trains runs one after another: without a reset, each new model is a recompilation
    # of the same code, and after dynamo's limit (8) it silently falls back to eager kernels
    torch._dynamo.reset()
    if mode == "cudagraphs":
        return torch.compile(loss, backend="cudagraphs", dynamic=False)
    if mode in INDUCTOR:
        return torch.compile(loss, mode=INDUCTOR[mode], dynamic=False)
    raise ValueError(f"train.compile: unknown mode {mode!r} (known: auto, {', '.join(COMPILE)})")


def compile_mode(setting: str, width: int) -> str:
    """train.compile for a run: `auto` picks by width, from `bench-train`'s measurements."""
    if setting != "auto":
        return setting
    return "cudagraphs" if width < AUTO_INDUCTOR_WIDTH else "inductor-cudagraphs"


# From this width up, `compile: auto` adds inductor's fused kernels to the CUDA graphs. Measured on
# an H200 (benchmarks/results/throughput.json, standard w64 L=212): inductor-cudagraphs trains 20.3M
# tokens/s against 14.6M for CUDA graphs alone, for 9 s more start-up, which pays from about 2.3M
# sequences on (the paper profile's cap is 8M). w32 was not measured, so it keeps the cheaper start-up.
AUTO_INDUCTOR_WIDTH = 64


def learning_rate(lr: float, lr_width: int | None, width: int) -> float:
    """A run's peak learning rate: `lr` up to width `lr_width`, `lr * lr_width / width` above it (the
    1/width rule for Adam on hidden weights, as in muP; None: `lr` at every width). The schedule study
    (reports/schedule) found lr 1e-3 best at w256 and stalling at w512, where 5e-4 learns."""
    return lr * min(1.0, lr_width / width) if lr_width else lr


def build_module(meta: dict, run: dict, settings: dict) -> ChainModule:
    """The module of a run (dataset meta, run = attention/width/seed, settings = the shared training
    settings of params.yaml's train section)."""
    options = settings["attention_options"].get(run["attention"], {})
    model = {"vocab_size": len(meta["vocab"]), "max_len": meta["max_len"], "width": run["width"],
             "layers": settings["layers"], "heads": settings["heads"], "dropout": settings["dropout"],
             "attention": run["attention"], "attention_options": options}
    return ChainModule(model=model, task={"name": meta["task"], "n": meta["n"]},
                       optim={**{k: settings[k] for k in ("weight_decay", "warmup_steps", "decay_fraction",
                                                          "grad_clip")},
                              "lr": learning_rate(settings["lr"], settings.get("lr_width"), run["width"])},
                       eos_id=meta["vocab"].index("<eos>"), unique_chain=meta["unique_chain"],
                       val_generation=settings["val_generation"])


def processes() -> dict:
    """The Trainer's devices: one, or under a distributed launch (torchrun sets WORLD_SIZE in every
    process it starts: the train stage's own, `train.devices` > 1, or a user's on several nodes)
    Lightning's DDP over all of them, one device per process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return {"devices": 1}
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    return {"devices": local, "num_nodes": world // local, "strategy": "ddp"}


def fit(folder: Path, meta: dict, out: Path, run: dict, settings: dict, logger=False, callbacks=(),
        resume: Path | None = None) -> dict:
    """Train one run into `out` (resuming from checkpoint `resume`); returns what the run's result
    is made of, all of it determined by the inputs. Writes `out/model.ckpt` (the best validation's
    weights and hyperparameters: no trainer state, no paths); `out/checkpoints/` is the caller's to
    remove once it has recorded the result."""
    L.seed_everything(run["seed"], workers=True, verbose=False)
    gpu = torch.cuda.is_available()
    if gpu:  # float32 products (linear attention's sums) on tensor cores, accumulated in float32
        torch.set_float32_matmul_precision("high")
    module = build_module(meta, run, settings)
    module.compile = compile_mode(settings.get("compile", "auto"), run["width"])
    dm = ChainDataModule(folder, meta, settings["batch_size"], seed=run["seed"], epoch_steps=settings["val_every"])
    # both written after a validation, when early stopping has already seen it: best.ckpt on
    # improvement, last.ckpt every time (what a resumed run starts from)
    checkpoints = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor="val/acc", mode="max",
                                  save_top_k=1, enable_version_counter=False, save_on_train_epoch_end=False)
    latest = ModelCheckpoint(dirpath=out / "checkpoints", filename="last", monitor=None, save_top_k=1,
                             enable_version_counter=False, save_on_train_epoch_end=False)
    stop = EarlyStopping(monitor="val/acc", mode="max", stopping_threshold=settings["stop_at"], patience=10**9,
                         check_on_train_epoch_end=False)
    trainer = L.Trainer(
        accelerator="auto", **processes(), precision="bf16-mixed" if gpu else "32-true",
        max_steps=settings["max_steps"], max_epochs=-1, check_val_every_n_epoch=1,
        deterministic=not gpu, logger=logger,
        callbacks=[checkpoints, latest, stop, *callbacks], enable_progress_bar=False, enable_model_summary=False,
        log_every_n_steps=max(1, min(50, settings["val_every"])), default_root_dir=out, num_sanity_val_steps=0,
    )
    trainer.fit(module, dm, ckpt_path=resume)
    if trainer.interrupted:  # Lightning returns normally on Ctrl-C: never record that as finished
        raise KeyboardInterrupt(f"training of {out} interrupted; the next run of the stage resumes it")
    if trainer.global_rank:  # another process of a DDP training: rank 0 writes and reports the result
        return {}
    best = out / "checkpoints" / "best.ckpt"
    source = best if best.exists() else out / "checkpoints" / "last.ckpt"
    final = torch.load(source, map_location="cpu", weights_only=False)  # our own file, just written
    tmp = out / f".{FINAL}.tmp"
    torch.save({k: final[k] for k in KEEP if k in final}, tmp)
    tmp.replace(out / FINAL)
    score = checkpoints.best_model_score
    return {
        "status": "diverged" if module.diverged else "finished",
        "reason": module.diverged,
        "steps": trainer.global_step,
        "best_step": final["global_step"],
        "best_val_acc": None if module.diverged or score is None else float(score),
        "stopped_early": trainer.global_step < settings["max_steps"] and not module.diverged,
        "checkpoint_sha256": sha256(out / FINAL),
    }
