"""Analytic FLOPs of the decoder for a configuration: what each attention type costs in theory.

A multiply-add counts 2 FLOPs; only the matrix products are counted (projections, MLP, head,
attention scores and weighted sums, linear attention's state update and read-out), not norms,
softmax or activations. Per position i of a sequence of length L:

- projections: q, k, v and output, 2 * 4 * W^2 per layer; MLP 2 * 8 * W^2 per layer; head 2 * W * V;
- softmax attention (standard, sparse): 4 * W * keys(i) per layer, where keys(i) is the number of
  positions i attends to (i + 1 for standard; the pattern's count for sparse);
- linear attention, in its recurrent form: the state update phi(k) v^T and the read-out
  phi(q) S, 2 * d^2 each per head, plus the normaliser phi(q) . z, 2 * d per head: 4 * W * d + 2 * W.
"""

from __future__ import annotations

import math


def keys_attended(attention: str, length: int, block: int | None = None, summary: int = 1,
                  pattern: str = "fixed") -> int:
    """Sum over positions i < length of the number of positions i attends to."""
    if attention == "standard":
        return length * (length + 1) // 2
    if attention == "linear":
        return 0
    if attention != "sparse":
        raise ValueError(f"unknown attention type {attention!r}")
    b = block or math.ceil(math.sqrt(length))
    full, rest = divmod(length, b)
    if pattern == "fixed":
        # own block up to i: 1 + 2 + ... per block; summary: c keys of each earlier block
        own = full * b * (b + 1) // 2 + rest * (rest + 1) // 2
        summaries = summary * (b * full * (full - 1) // 2 + rest * full)
        return own + summaries
    # strided: the last min(i + 1, b) positions, plus floor(i / b) positions a multiple of b back
    window = b * (b + 1) // 2 + (length - b) * b if length >= b else length * (length + 1) // 2
    strides = b * full * (full - 1) // 2 + rest * full
    return window + strides


def flops_per_sequence(length: int, width: int, layers: int, heads: int, vocab: int, attention: str,
                       **options) -> dict[str, int]:
    """FLOPs of one forward pass over a sequence of `length` tokens, by part and in total."""
    dim = width // heads
    projections = layers * length * 2 * 4 * width * width
    mlp = layers * length * 2 * 8 * width * width
    head = length * 2 * width * vocab
    if attention == "linear":
        mixing = layers * length * (4 * width * dim + 2 * width)
    else:
        mixing = layers * 4 * width * keys_attended(attention, length, **options)
    parts = {"attention": mixing, "projections": projections, "mlp": mlp, "head": head}
    parts["total"] = sum(parts.values())
    return parts


def flops_per_token(length: int, width: int, layers: int, heads: int, vocab: int, attention: str,
                    **options) -> float:
    return flops_per_sequence(length, width, layers, heads, vocab, attention, **options)["total"] / length
