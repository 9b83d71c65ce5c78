"""Attention types behind one interface (`base.Attention`), and the registry that names them.

An attention type describes itself in its own module: name, display label, options (its
constructor's keywords), cost model (`keys_attended` / `mixing_flops`), fast form and reference
form. Adding one (say, sliding-window) is that module plus `register` below; params validation, the
cost model, the report's rows and the benchmarks all ask this registry.
"""

from __future__ import annotations

import inspect

from .base import Attention, AttentionError
from .linear import LinearAttention
from .sparse import SparseAttention
from .standard import StandardAttention

ATTENTION: dict[str, type[Attention]] = {}  # in the row order of the paper's figures


def register(cls: type[Attention]) -> type[Attention]:
    if not (isinstance(cls, type) and issubclass(cls, Attention)):
        raise AttentionError(f"{cls!r} is not an Attention subclass")
    if not cls.name or not cls.name.isidentifier() or not cls.label:
        raise AttentionError(f"{cls.__name__}: an attention type needs a `name` (an identifier) and a `label`")
    if cls.name in ATTENTION and ATTENTION[cls.name] is not cls:
        raise AttentionError(f"attention type {cls.name!r} is already registered")
    ATTENTION[cls.name] = cls
    return cls


for _cls in (StandardAttention, LinearAttention, SparseAttention):
    register(_cls)


def make_attention(name: str, max_len: int, **options) -> Attention:
    if name not in ATTENTION:
        raise AttentionError(f"unknown attention type {name!r} (known: {', '.join(ATTENTION)})")
    known = [p for p in inspect.signature(ATTENTION[name].__init__).parameters if p not in ("self", "max_len")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise AttentionError(f"attention {name} has no option {unknown[0]!r} "
                             f"(its options: {', '.join(known) or 'none'})")
    return ATTENTION[name](max_len, **options)


def describe(name: str) -> dict:
    """What reports need to know of a type without importing torch: its label and row order."""
    return {"attention_label": ATTENTION[name].label, "attention_order": list(ATTENTION).index(name)}


__all__ = ["ATTENTION", "Attention", "AttentionError", "describe", "make_attention", "register"]
