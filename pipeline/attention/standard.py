"""Causal softmax attention: the standard Transformer."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Attention, KVCache, softmax_attention


class StandardAttention(Attention):
    name = "standard"
    label = "Standard Transformer"

    def keys_attended(self, length: int) -> int:
        return length * (length + 1) // 2

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # PyTorch picks FlashAttention / memory-efficient kernels on the GPU, a fused path on the CPU.
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def reference(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        length = q.shape[2]
        causal = torch.ones(length, length, dtype=torch.bool, device=q.device).tril()
        return softmax_attention(q, k, v, causal)

    def init_state(self, batch, heads, head_dim, device, dtype) -> KVCache:
        return KVCache(batch, heads, head_dim, device, dtype)

    def step(self, q, k, v, state: KVCache):
        state.append(k, v)
        # explicit products (not SDPA) so that FLOP counters see the work; one query is cheap anyway
        return softmax_attention(q, state.keys(), state.values()), state
