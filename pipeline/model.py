"""The decoder Transformer (GPT-style, as in the public CoT_benchmark code); only the attention varies.

token embedding + sinusoidal position encoding -> LayerNorm -> dropout
-> layers x [x + attn(LN(x)), x + MLP(LN(x))]  (pre-LN, 4x GELU MLP)
-> LayerNorm -> linear head

The model knows its attention only by registry name (`pipeline.attention`), and decodes
incrementally with the attention's own state (key/value cache, or the running sums of linear
attention), which gives exactly the tokens of full recomputation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .attention import AttentionError, make_attention


class ModelError(ValueError):
    """A bad model configuration; the message names the parameter."""


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    max_len: int
    width: int = 128
    layers: int = 3
    heads: int = 4
    dropout: float = 0.1
    attention: str = "standard"
    attention_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_len", "width", "layers", "heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelError(f"{name} must be a positive integer, got {value!r}")
        if self.width % self.heads:
            raise ModelError(f"width {self.width} is not divisible by heads {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ModelError(f"dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def sinusoidal_positions(length: int, width: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float64)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, dtype=torch.float64) * (-math.log(10000.0) / width))
    table = torch.zeros(length, width, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : width // 2]
    return table.float()


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.ln1 = nn.LayerNorm(cfg.width)
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.attn = make_attention(cfg.attention, cfg.max_len, **cfg.attention_options)
        self.proj = nn.Linear(cfg.width, cfg.width)
        self.ln2 = nn.LayerNorm(cfg.width)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, 4 * cfg.width), nn.GELU(), nn.Linear(4 * cfg.width, cfg.width))
        self.drop = nn.Dropout(cfg.dropout)

    def _split(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, length, width = h.shape
        qkv = self.qkv(h).view(batch, length, 3, self.heads, width // self.heads)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, length, head_dim)

    def _merge(self, x: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
        batch, heads, length, dim = mixed.shape
        x = x + self.drop(self.proj(mixed.transpose(1, 2).reshape(batch, length, heads * dim)))
        return x + self.drop(self.mlp(self.ln2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._merge(x, self.attn(*self._split(self.ln1(x))))

    def step(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        mixed, state = self.attn.step(*self._split(self.ln1(x)), state)
        return self._merge(x, mixed), state


class DecoderTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        try:
            self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        except AttentionError as err:
            raise ModelError(str(err)) from None
        self.embed = nn.Embedding(cfg.vocab_size, cfg.width)
        self.register_buffer("positions", sinusoidal_positions(cfg.max_len, cfg.width), persistent=False)
        self.ln_embed = nn.LayerNorm(cfg.width)
        self.drop = nn.Dropout(cfg.dropout)
        self.ln_out = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.vocab_size)

    def _embed(self, tokens: torch.Tensor, start: int) -> torch.Tensor:
        end = start + tokens.shape[1]
        if end > self.cfg.max_len:
            raise ModelError(f"sequence of {end} tokens is longer than max_len {self.cfg.max_len}")
        return self.drop(self.ln_embed(self.embed(tokens) + self.positions[start:end]))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (batch, length, vocab) for token ids (batch, length)."""
        x = self._embed(tokens, 0)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_out(x))

    def init_state(self, batch: int) -> list:
        p = self.head.weight
        dim = self.cfg.width // self.cfg.heads
        return [b.attn.init_state(batch, self.cfg.heads, dim, p.device, p.dtype) for b in self.blocks]

    def step(self, tokens: torch.Tensor, position: int, state: list) -> tuple[torch.Tensor, list]:
        """Logits (batch, vocab) after feeding one token per row at `position`."""
        x = self._embed(tokens[:, None], position)
        new_state = []
        for block, s in zip(self.blocks, state):
            x, s = block.step(x, s)
            new_state.append(s)
        return self.head(self.ln_out(x))[:, 0], new_state

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, max_new: int, eos_id: int, pad_id: int = 0,
                 prompt_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Greedy continuation of prompts (batch, P), one token at a time with the attention state; a
        row that wrote <eos> writes <pad> from then on. Row i's prompt is its first `prompt_lengths[i]`
        tokens (default: all P): every row steps through the same positions, reading its prompt while
        it lasts and its own output after, so prompts of different lengths share one pass instead
        of one pass per length. At most P + `max_new` tokens in all (and the model's max_len).
        Returns (batch, P + k)."""
        batch, width = prompt.shape
        total = min(width + max_new, self.cfg.max_len)
        lengths = torch.full((batch,), width, device=prompt.device) if prompt_lengths is None else prompt_lengths
        state = self.init_state(batch)
        out = [prompt[:, :1]]
        done = torch.zeros(batch, dtype=torch.bool, device=prompt.device)
        token = prompt[:, 0]
        first = int(lengths.min())  # no row can be done before its prompt ends: no sync until then
        for t in range(total - 1):  # feed position t, write position t + 1
            logits, state = self.step(token, t, state)
            token = logits.argmax(-1)
            if t + 1 < width:  # rows still in their prompt read it
                token = torch.where(t + 1 < lengths, prompt[:, t + 1], token)
            token = torch.where(done, torch.full_like(token, pad_id), token)
            out.append(token[:, None])
            done |= (token == eos_id) & (t + 1 >= lengths)
            if t + 1 >= first and bool(done.all()):
                break
        return torch.cat(out, dim=1)

