"""Several small models trained in one process, for sweeps of small widths (32-128).

Measured on the H200: a w64 step of the train stage
costs 3.4 ms of GPU time but about 5 ms of CPU time (Lightning's loop, autograd, the optimiser),
and separate processes time-slice the GPU, so 12 runs at once, eager, took 114 s against 107 s one
after another. Kernels of different models overlap only when one process issues them on separate
streams, and one CPU thread can drive many models only when a step costs it little. So each model's
whole step (batch selection, forward under bf16 autocast, backward, gradient clipping, fused AdamW
with its learning rate in a tensor) is captured once as a CUDA graph and replayed on the model's own
stream. This benchmark measures what that design gains before the train stage is rebuilt on it: the
project's model and loss on random tokens, against the same models trained one after another
eagerly, in one run. No Lightning, no validation: the upper bound of the design. The phase
`packed_compiled` compiles each model (inductor, default mode) before its step is captured: fewer,
fused kernels in each graph, at the cost of compiling 12 models in one process.

    python -m benchmarks pack --steps 1000     # benchmarks/results/pack.json
    python -m benchmarks pack --phases packed_compiled,sequential_eager
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipeline.attention import ATTENTION
from pipeline.execution.runtime import one_line
from pipeline.model import DecoderTransformer, ModelConfig
from pipeline.training import Schedule, adamw, chain_loss

from .train import provenance, sync, write

WIDTHS = [32, 64, 96, 128]
WARMUP_STEPS = 3  # eager steps on a side stream before capture (cuBLAS workspaces, AdamW's state)
# in the order they run: the new numbers first, the eager baseline last; all but the last need a GPU
PHASES = ("packed_compiled", "packed_graphed", "sequential_graphed", "sequential_eager")
DEFAULT_PHASES = PHASES[1:]


@dataclass
class Member:
    """One model of the pack, with what its graphed step reads and writes (all on the device)."""

    model: torch.nn.Module  # a DecoderTransformer, or its torch.compile wrapper (the same parameters)
    optimizer: torch.optim.Optimizer
    lr: torch.Tensor | float
    data: torch.Tensor  # (rows, L + 1) training tokens
    batch: int
    base_lr: float
    schedule: Schedule
    step_index: torch.Tensor  # the step as a device tensor: the graph picks its batch by it
    loss: torch.Tensor | None = None  # the last step's loss (a graph's static output)
    graph: torch.cuda.CUDAGraph | None = None
    stream: torch.cuda.Stream | None = None
    losses: list = field(default_factory=list)

    def rows(self) -> torch.Tensor:
        # consecutive rows from the step's offset: the same batches graphed and eager
        start = self.step_index * self.batch
        return (start + torch.arange(self.batch, device=self.data.device)) % self.data.shape[0]

    def step(self) -> None:
        """One training step, as the graph records it (nothing here may synchronise with the CPU)."""
        tokens = self.data[self.rows()]
        with torch.autocast(self.data.device.type, torch.bfloat16, enabled=self.data.is_cuda, cache_enabled=False):
            logits = self.model(tokens[:, :-1])
        self.loss = chain_loss(logits, tokens[:, 1:])
        self.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.step_index += 1

    def set_lr(self, step: int) -> None:
        value = self.base_lr * self.schedule(step)
        if isinstance(self.lr, torch.Tensor):
            self.lr.fill_(value)  # in place: the captured optimiser reads this tensor
        else:
            for group in self.optimizer.param_groups:
                group["lr"] = value


def member(attention: str, width: int, vocab: int, length: int, batch: int, rows: int, steps: int,
           device: str, graphed: bool, seed: int = 0, dropout: float = 0.1, compiled: bool = False) -> Member:
    torch.manual_seed(seed)
    model = DecoderTransformer(ModelConfig(vocab_size=vocab, max_len=length, width=width, dropout=dropout,
                                           attention=attention)).to(device)
    if compiled:  # compiled at the first warm-up step; the graph then records inductor's kernels
        model = torch.compile(model, dynamic=False)
    base_lr = 1e-3
    lr = torch.tensor(base_lr, device=device) if graphed else base_lr
    optimizer = adamw(model, lr, 0.01, fused=device == "cuda", capturable=graphed)
    data = torch.randint(1, vocab, (rows, length + 1), generator=torch.Generator().manual_seed(seed)).to(device)
    return Member(model, optimizer, lr, data, batch, base_lr, Schedule(steps, 200, round(0.2 * steps)),
                  torch.zeros((), dtype=torch.long, device=device))


def capture(m: Member) -> None:
    """Warm-up steps on a side stream, then the whole step recorded as one graph on the member's
    own stream (as in PyTorch's whole-network capture)."""
    m.stream = torch.cuda.Stream()
    m.stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(m.stream):
        for i in range(WARMUP_STEPS):
            m.set_lr(i)
            m.optimizer.zero_grad(set_to_none=True)
            m.step()
    torch.cuda.current_stream().wait_stream(m.stream)
    m.optimizer.zero_grad(set_to_none=True)
    m.graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(m.graph, stream=m.stream):
        m.step()


def train_eager(m: Member, steps: int, record_every: int = 0) -> None:
    for i in range(steps):
        m.set_lr(i)
        m.optimizer.zero_grad(set_to_none=True)
        m.step()
        if record_every and (i + 1) % record_every == 0:
            m.losses.append(m.loss.detach().clone())


def train_packed(members: list[Member], steps: int, record_every: int = 0) -> None:
    """Every member's graph replayed once a step, each on its own stream: their kernels overlap.
    The first WARMUP_STEPS steps were taken at capture."""
    for i in range(WARMUP_STEPS, steps):
        for m in members:
            with torch.cuda.stream(m.stream):
                m.set_lr(i)
                m.graph.replay()
                if record_every and (i + 1) % record_every == 0:
                    m.losses.append(m.loss.detach().clone())
    for m in members:
        torch.cuda.current_stream().wait_stream(m.stream)


def configurations(widths: list[int]) -> list[tuple[str, int]]:
    return [(attention, width) for attention in ATTENTION for width in widths]


def run(out: Path, steps: int, batch: int, length: int = 212, vocab: int = 40, widths: list[int] = WIDTHS,
        git: str | None = None, phases: tuple[str, ...] = DEFAULT_PHASES) -> dict:
    """The chosen `phases` (PHASES, in that order; the graphed ones on the GPU only), each timed whole:
    building, compiling, capture and training; the packed ones' training loop alone too."""
    if steps <= WARMUP_STEPS or batch < 1:
        raise ValueError(f"pack: --steps must be more than {WARMUP_STEPS} and --batch at least 1, "
                         f"got {steps} and {batch}")
    unknown = [p for p in phases if p not in PHASES]
    if unknown or not phases:
        raise ValueError(f"pack: --phases: unknown {unknown[0]!r} (known: {', '.join(PHASES)})" if unknown
                         else "pack: --phases: none given")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    configs = configurations(widths)
    rows = max(batch * 4, 64)
    seconds, loop_seconds, per_model, peaks, errors, graphs = {}, {}, {}, {}, {}, {}
    command = f"python -m benchmarks pack --steps {steps} --batch {batch}"
    if tuple(phases) != DEFAULT_PHASES:
        command += f" --phases {','.join(phases)}"
    about = {**provenance(device, git), "command": command, "models": [f"{a}-w{w}" for a, w in configs],
             "L": length, "vocab": vocab, "steps": steps, "batch": batch}

    def record() -> dict:  # after every phase: a command cut off by its time limit keeps what it timed
        eager = seconds.get("sequential_eager")
        result = {**about, "seconds": seconds, "training_loop_seconds": loop_seconds, "seconds_per_model": per_model,
                  "peak_gpu_gib": peaks, "errors": errors, "compiled_graphs": graphs,
                  "speedup": {k: eager / v for k, v in seconds.items() if k != "sequential_eager" and eager}}
        write(out, result)
        return result

    def timed(label: str, body) -> None:
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sync(device)
        start = time.perf_counter()
        try:
            body()
            sync(device)
        except RuntimeError as err:  # a path that cannot be captured is a result too, not the end of the run
            errors[label] = one_line(err)
            print(f"pack: {label}: failed: {errors[label]}", flush=True)
            record()
            return
        seconds[label] = time.perf_counter() - start
        if device == "cuda":
            peaks[label] = torch.cuda.max_memory_allocated() / 2**30
        print(f"pack: {label}: {seconds[label]:.1f}s", flush=True)
        record()

    def one_by_one(label: str, graphed: bool) -> None:  # each model's seconds too: what packing overlaps
        per_model[label] = {}
        for attention, width in configs:
            sync(device)
            start = time.perf_counter()
            m = member(attention, width, vocab, length, batch, rows, steps, device, graphed)
            if graphed:
                capture(m)
                train_packed([m], steps)
            else:
                train_eager(m, steps)
            sync(device)
            per_model[label][f"{attention}-w{width}"] = round(time.perf_counter() - start, 3)

    def packed(label: str, compiled: bool) -> None:
        members = [member(a, w, vocab, length, batch, rows, steps, device, True, compiled=compiled)
                   for a, w in configs]
        # every model's forward is one function to dynamo: above its recompile limit (8) the rest
        # would silently run eager, so the limit is raised to the pack's size while they compile
        with torch._dynamo.config.patch(recompile_limit=max(8, 2 * len(members))):
            for m in members:
                capture(m)
        if compiled:  # the evidence that none fell back to eager: a graph a model at least
            from torch._dynamo.utils import counters
            graphs[label] = counters["stats"]["unique_graphs"]
        sync(device)
        start = time.perf_counter()  # what a long training pays a step, without the start-up
        train_packed(members, steps)
        sync(device)
        loop_seconds[label] = time.perf_counter() - start

    for attention, width in configs:  # untimed: CUDA's, cuBLAS's and cuDNN's first-use costs are no phase's
        train_eager(member(attention, width, vocab, length, batch, rows, steps, device, False), 1)
    bodies = {"packed_compiled": lambda: packed("packed_compiled", True),
              "packed_graphed": lambda: packed("packed_graphed", False),
              "sequential_graphed": lambda: one_by_one("sequential_graphed", True),
              "sequential_eager": lambda: one_by_one("sequential_eager", False)}
    for label in PHASES:
        if label in phases and (device == "cuda" or label == "sequential_eager"):
            timed(label, bodies[label])
    return record()
