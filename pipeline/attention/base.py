"""The one interface every attention type implements.

An attention module mixes values along the sequence given queries and keys, all shaped
(batch, heads, length, head_dim), causally: the output at position i depends on positions <= i
only. Projections live in the model; this module is only the mixing. Each type has

- `forward`: the fast path (what training uses, on any device),
- `reference`: a plain, explicit form (masks or the quadratic form) that tests compare against,
- `init_state` / `step`: incremental decoding, one new position at a time, O(1) work per token for
  linear attention and one cache append for the others.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from torch import nn


class AttentionError(ValueError):
    """A bad attention configuration; the message names the parameter."""


class Attention(nn.Module):
    name: str = ""  # the registry key, used in params.yaml and run ids
    label: str = ""  # how reports and figures name it

    def __init__(self, max_len: int) -> None:
        super().__init__()
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
            raise AttentionError(f"max_len must be a positive integer, got {max_len!r}")
        self.max_len = max_len

    def options(self) -> dict[str, Any]:
        """The type's own settings (block size, ...), for configs and the cost model."""
        return {}

    def keys_attended(self, length: int) -> int:
        """Sum over positions i < length of the number of positions i attends to (softmax types)."""
        raise NotImplementedError(f"attention {self.name!r} has no cost model (keys_attended or mixing_flops)")

    def mixing_flops(self, length: int, width: int, heads: int) -> int:
        """Matrix-product FLOPs of one layer's mixing over a sequence of `length` (a multiply-add is
        2): for softmax attention a score and a weighted sum, 2 * width each, per attended key."""
        return 4 * width * self.keys_attended(length)

    @classmethod
    def benchmark_variants(cls, device: str) -> dict[str, dict]:
        """What `bench-attention` times: record name -> options; the type's own name first."""
        return {cls.name: {}}

    @abstractmethod
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def reference(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def init_state(self, batch: int, heads: int, head_dim: int, device, dtype) -> Any: ...

    @abstractmethod
    def step(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """q, k, v of the next position, (batch, heads, 1, head_dim): its output and the new state."""


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax attention by explicit products, with an optional boolean mask (query x key) that
    allows at least one key in every row."""
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.softmax(wide(scores), dim=-1).to(v.dtype) @ v


def wide(x: torch.Tensor) -> torch.Tensor:
    """At least float32: softmax and running sums in bf16 lose too much."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


class KVCache:
    """Keys and values of every decoded position, grown in place (amortised doubling)."""

    def __init__(self, batch: int, heads: int, head_dim: int, device, dtype, capacity: int = 64) -> None:
        self.k = torch.empty(batch, heads, capacity, head_dim, device=device, dtype=dtype)
        self.v = torch.empty_like(self.k)
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        if self.length == self.k.shape[2]:
            self.k = torch.cat([self.k, torch.empty_like(self.k)], dim=2)
            self.v = torch.cat([self.v, torch.empty_like(self.v)], dim=2)
        self.k[:, :, self.length] = k[:, :, 0]
        self.v[:, :, self.length] = v[:, :, 0]
        self.length += 1

    def keys(self) -> torch.Tensor:
        return self.k[:, :, : self.length]

    def values(self) -> torch.Tensor:
        return self.v[:, :, : self.length]
