"""Attention types behind one interface (`base.Attention`), and the registry that names them.

Adding a type (say, sliding-window) is one module with an `Attention` subclass and one entry here.
"""

from __future__ import annotations

from .base import Attention, AttentionError
from .linear import LinearAttention
from .sparse import SparseAttention
from .standard import StandardAttention

ATTENTION: dict[str, type[Attention]] = {
    "standard": StandardAttention,
    "sparse": SparseAttention,
    "linear": LinearAttention,
}


def make_attention(name: str, max_len: int, **options) -> Attention:
    if name not in ATTENTION:
        raise AttentionError(f"unknown attention type {name!r} (known: {', '.join(ATTENTION)})")
    try:
        return ATTENTION[name](max_len, **options)
    except TypeError as err:  # an option this type does not have
        raise AttentionError(f"attention {name}: {err}") from None


__all__ = ["ATTENTION", "Attention", "AttentionError", "make_attention"]
