"""Analytic FLOPs of the decoder for a configuration: what each attention type costs in theory.

A multiply-add counts 2 FLOPs; only the matrix products are counted (projections, MLP, head, and the
attention type's own mixing cost, which its module defines: `Attention.mixing_flops`), not norms,
softmax or activations. Per position of a sequence of length L:

- projections: q, k, v and output, 2 * 4 * W^2 per layer; MLP 2 * 8 * W^2 per layer; head 2 * W * V;
- mixing: per layer, whatever the attention type says (4 W keys(i) for softmax attention, where
  keys(i) is the number of positions i attends to; the recurrent form's cost for linear attention).

Computed where FLOPs are reported (the evaluate stage), so changing it retrains nothing.
"""

from __future__ import annotations

from .attention import make_attention


def flops_per_sequence(length: int, width: int, layers: int, heads: int, vocab: int, attention: str,
                       **options) -> dict[str, int]:
    """FLOPs of one forward pass over a sequence of `length` tokens, by part and in total."""
    mixing = layers * make_attention(attention, length, **options).mixing_flops(length, width, heads)
    parts = {"attention": mixing, "projections": layers * length * 2 * 4 * width * width,
             "mlp": layers * length * 2 * 8 * width * width, "head": length * 2 * width * vocab}
    parts["total"] = sum(parts.values())
    return parts


def flops_per_token(length: int, width: int, layers: int, heads: int, vocab: int, attention: str,
                    **options) -> float:
    return flops_per_sequence(length, width, layers, heads, vocab, attention, **options)["total"] / length
