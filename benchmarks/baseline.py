"""The public CoT_benchmark decoder (Feng et al. 2023, github guyuntian/CoT_benchmark, model.py) as
that code trains it: float32, attention by an explicit masked softmax over the full L x L scores,
tanh-approximated GELU, dropout after the attention weights and in every residual branch.

Written from its description here (not copied), for one purpose: the baseline of `bench-train`,
whose speed targets are ratios to this model's training throughput on the same GPU.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class MaskedSoftmaxAttention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float, max_len: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.drop_weights, self.drop_out = nn.Dropout(dropout), nn.Dropout(dropout)
        self.register_buffer("causal", torch.ones(max_len, max_len).tril()[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = (t.view(batch, length, self.heads, -1).transpose(1, 2) for t in self.qkv(x).split(width, dim=2))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(k.shape[-1])
        scores = scores.masked_fill(self.causal[:, :, :length, :length] == 0, float("-inf"))
        mixed = self.drop_weights(F.softmax(scores, dim=-1)) @ v
        return self.drop_out(self.out(mixed.transpose(1, 2).reshape(batch, length, width)))


class BaselineBlock(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float, max_len: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = MaskedSoftmaxAttention(width, heads, dropout, max_len)
        self.up, self.down, self.drop = nn.Linear(width, 4 * width), nn.Linear(4 * width, width), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.drop(self.down(F.gelu(self.up(self.ln2(x)), approximate="tanh")))


class BaselineGPT(nn.Module):
    def __init__(self, vocab: int, max_len: int, width: int, layers: int = 3, heads: int = 4,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width, padding_idx=0)
        position = torch.arange(max_len, dtype=torch.float32)[:, None]
        freq = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
        table = torch.zeros(max_len, width)
        table[:, 0::2], table[:, 1::2] = torch.sin(position * freq), torch.cos(position * freq)
        self.register_buffer("positions", table[None], persistent=False)
        self.ln_embed, self.drop = nn.LayerNorm(width), nn.Dropout(dropout)
        self.blocks = nn.ModuleList(BaselineBlock(width, heads, dropout, max_len) for _ in range(layers))
        self.ln_out, self.head = nn.LayerNorm(width), nn.Linear(width, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.ln_embed(self.embed(tokens) + self.positions[:, : tokens.shape[1]]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_out(x))
