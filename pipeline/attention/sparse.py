"""Sparse Transformer attention (Child et al. 2019): each position sees a subset of earlier ones.

Fixed pattern: its own block of B positions, plus the last c positions ("summary") of every earlier
block. Strided pattern: the previous B positions, plus every position a multiple of B back. With
B near sqrt(L) each position attends to O(sqrt(L)) others.

Three fast paths compute the same function (`path`; tests compare each with the reference):
- `blocks` never forms the L x L score matrix. It reshapes the sequence into blocks and computes
  two small score tensors that it normalises together: the block-local scores and the scores
  against the few keys that other blocks offer (the summary keys, or the same residue mod B). Plain
  tensor algebra, on the CPU (with backward) and the GPU alike.
- `flex` (fixed pattern, GPU): FlexAttention with the summary keys gathered after the sequence, so
  that its block mask really skips the blocks a query does not see: the fastest at long lengths.
- `dense`: fused softmax attention (scaled_dot_product_attention) with the pattern as a boolean
  mask. It does the dense work, but at the lengths of the paper's tasks (L <= ~510) a fused kernel
  over a 0.25M-entry mask beats the small batched products of `blocks` (bench-train measures it).
`auto` takes `dense` up to DENSE_MAX_LEN positions, then `flex` on the GPU (fixed pattern), else
`blocks`. Which path runs changes the speed of training, never the model's cost (`keys_attended`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Attention, AttentionError, KVCache, softmax_attention, wide

PATTERNS = ("fixed", "strided")
PATHS = ("auto", "blocks", "flex", "dense")
DENSE_MAX_LEN = 1024  # `auto` uses the masked fused kernel up to this length


class SparseAttention(Attention):
    name = "sparse"
    label = "Sparse Transformer"

    def __init__(self, max_len: int, block: int | None = None, summary: int = 1, pattern: str = "fixed",
                 path: str = "auto") -> None:
        super().__init__(max_len)
        block = math.ceil(math.sqrt(max_len)) if block is None else block
        if isinstance(block, bool) or not isinstance(block, int) or block < 1:
            raise AttentionError(f"sparse block size must be an integer >= 1, got {block!r}")
        if isinstance(summary, bool) or not isinstance(summary, int) or not 1 <= summary <= block:
            raise AttentionError(f"sparse summary must be an integer in 1..block ({block}), got {summary!r}")
        if pattern not in PATTERNS:
            raise AttentionError(f"sparse pattern must be one of {', '.join(PATTERNS)}, got {pattern!r}")
        if path not in PATHS:
            raise AttentionError(f"sparse path must be one of {', '.join(PATHS)}, got {path!r}")
        if path == "flex" and pattern != "fixed":
            raise AttentionError("sparse path 'flex' needs the fixed pattern")
        self.block, self.summary, self.pattern, self.path = block, summary, pattern, path
        self._flex_masks: dict = {}

    def options(self) -> dict:
        return {"block": self.block, "summary": self.summary, "pattern": self.pattern}

    @classmethod
    def benchmark_variants(cls, device: str) -> dict[str, dict]:
        # the path `auto` takes, and each path on its own for comparison
        paths = ("blocks", "dense", "flex") if device == "cuda" else ("blocks", "dense")
        return {"sparse": {}, **{f"sparse_{p}": {"path": p} for p in paths}}

    # --- the pattern, by definition ------------------------------------------------------------
    def allowed(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """Whether position `query` may attend to position `key` (broadcasting integer tensors)."""
        b = self.block
        if self.pattern == "fixed":
            seen = (key // b == query // b) | (key % b >= b - self.summary)
        else:
            seen = (query - key < b) | ((query - key) % b == 0)
        return (key <= query) & seen

    def keys_attended(self, length: int) -> int:
        """The pattern's key count in closed form (a test checks it against `mask(length).sum()`)."""
        b = self.block
        full, rest = divmod(length, b)
        if self.pattern == "fixed":
            # own block up to i: 1 + 2 + ... per block; summary: c keys of each earlier block
            own = full * b * (b + 1) // 2 + rest * (rest + 1) // 2
            return own + self.summary * (b * full * (full - 1) // 2 + rest * full)
        # strided: the last min(i + 1, b) positions, plus floor(i / b) positions a multiple of b back
        window = b * (b + 1) // 2 + (length - b) * b if length >= b else length * (length + 1) // 2
        return window + b * full * (full - 1) // 2 + rest * full

    def mask(self, length: int, device=None) -> torch.Tensor:
        pos = torch.arange(length, device=device)
        return self.allowed(pos[:, None], pos[None, :])

    def reference(self, q, k, v):
        return softmax_attention(q, k, v, self.mask(q.shape[2], q.device))

    # --- fast paths ------------------------------------------------------------------------------
    def chosen_path(self, length: int, cuda: bool) -> str:
        if self.path != "auto":
            return self.path
        if length <= DENSE_MAX_LEN:
            return "dense"
        return "flex" if cuda and self.pattern == "fixed" else "blocks"

    def forward(self, q, k, v):
        path = self.chosen_path(q.shape[2], q.is_cuda)
        if path == "dense":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask(q.shape[2], q.device))
        if path == "flex":
            return self._fixed_flex(q, k, v)
        return self._fixed_blocks(q, k, v) if self.pattern == "fixed" else self._strided_blocks(q, k, v)

    def _blocks(self, *tensors: torch.Tensor) -> tuple[int, list[torch.Tensor]]:
        """Pad the sequence to whole blocks and view it as (batch, heads, blocks, block, dim)."""
        batch, heads, length, dim = tensors[0].shape
        nb = -(-length // self.block)
        pad = nb * self.block - length
        return nb, [F.pad(t, (0, 0, 0, pad)).view(batch, heads, nb, self.block, dim) for t in tensors]

    def _fixed_blocks(self, q, k, v):
        batch, heads, length, dim = q.shape
        b, c = self.block, self.summary
        nb, (qb, kb, vb) = self._blocks(q, k, v)
        scale = dim**-0.5
        local = (qb @ kb.transpose(-1, -2)) * scale  # (.., nb, b, b)
        local = local.masked_fill(~torch.ones(b, b, dtype=torch.bool, device=q.device).tril(), float("-inf"))
        ks = kb[..., b - c :, :].reshape(batch, heads, 1, nb * c, dim)
        vs = vb[..., b - c :, :].reshape(batch, heads, 1, nb * c, dim)
        summ = (qb @ ks.transpose(-1, -2)) * scale  # (.., nb, b, nb * c)
        key_block = torch.arange(nb * c, device=q.device) // c
        earlier = key_block[None, :] < torch.arange(nb, device=q.device)[:, None]  # (nb, nb * c)
        summ = summ.masked_fill(~earlier[:, None, :], float("-inf"))
        weights = torch.softmax(wide(torch.cat([local, summ], dim=-1)), dim=-1).to(v.dtype)
        out = weights[..., :b] @ vb + weights[..., b:] @ vs
        return out.reshape(batch, heads, nb * b, dim)[:, :, :length]

    def _strided_blocks(self, q, k, v):
        batch, heads, length, dim = q.shape
        b = self.block
        nb, (qb, kb, vb) = self._blocks(q, k, v)
        scale = dim**-0.5
        # window: the previous block and this one; query offset r sees key offset t in (r, r + b]
        prev_k = F.pad(kb, (0, 0, 0, 0, 1, 0))[:, :, :nb]
        prev_v = F.pad(vb, (0, 0, 0, 0, 1, 0))[:, :, :nb]
        kw, vw = torch.cat([prev_k, kb], dim=3), torch.cat([prev_v, vb], dim=3)  # (.., nb, 2b, dim)
        window = (qb @ kw.transpose(-1, -2)) * scale  # (.., nb, b, 2b)
        r = torch.arange(b, device=q.device)[:, None]
        t = torch.arange(2 * b, device=q.device)[None, :]
        inside = ((t > r) & (t <= r + b))[None].expand(nb, b, 2 * b).clone()
        inside[0, :, :b] = False  # block 0 has no previous block
        window = window.masked_fill(~inside, float("-inf"))
        # stride: same offset r in earlier blocks m < n (these are b, 2b, ... positions back)
        stride = torch.einsum("bhnrd,bhmrd->bhnrm", qb, kb) * scale  # (.., nb, b, nb)
        blocks = torch.arange(nb, device=q.device)
        stride = stride.masked_fill(~(blocks[None, :] < blocks[:, None])[:, None, :], float("-inf"))
        weights = torch.softmax(wide(torch.cat([window, stride], dim=-1)), dim=-1).to(v.dtype)
        out = weights[..., : 2 * b] @ vw + torch.einsum("bhnrm,bhmrd->bhnrd", weights[..., 2 * b :], vb)
        return out.reshape(batch, heads, nb * b, dim)[:, :, :length]

    def _fixed_flex(self, q, k, v):
        """FlexAttention over [keys; summary keys]: the block mask skips every block a query does not
        see, because the summary keys no longer sit in every block of the sequence."""
        batch, heads, length, dim = q.shape
        b, c = self.block, self.summary
        nb, (kb, vb) = self._blocks(k, v)
        ks = kb[..., b - c :, :].reshape(batch, heads, nb * c, dim)
        vs = vb[..., b - c :, :].reshape(batch, heads, nb * c, dim)
        mask = self._flex_mask(length, nb, q.device)
        return compiled_flex()(q, torch.cat([k, ks], 2), torch.cat([v, vs], 2), block_mask=mask)

    @torch.compiler.disable  # built once per length, outside any compiled training step
    def _flex_mask(self, length: int, nb: int, device):
        from torch.nn.attention.flex_attention import create_block_mask

        b, c = self.block, self.summary
        key = (length, device)
        if key not in self._flex_masks:
            def mask_mod(bi, hi, qi, ki):
                local = (ki < length) & (ki <= qi) & (ki // b == qi // b)
                summary = (ki >= length) & ((ki - length) // c < qi // b)
                return local | summary

            # _compile builds the block mask tile by tile instead of materialising L x (L + S)
            self._flex_masks[key] = create_block_mask(mask_mod, None, None, length, length + nb * c,
                                                      device=device, _compile=True)
        return self._flex_masks[key]

    # --- incremental decoding ----------------------------------------------------------------------
    def init_state(self, batch, heads, head_dim, device, dtype) -> KVCache:
        return KVCache(batch, heads, head_dim, device, dtype)

    def step(self, q, k, v, state: KVCache):
        state.append(k, v)
        pos = state.length - 1
        keys = torch.arange(state.length, device=q.device)
        allowed = self.allowed(torch.tensor(pos, device=q.device), keys)[None, :]
        return softmax_attention(q, state.keys(), state.values(), allowed), state


_COMPILED = None


def compiled_flex():
    global _COMPILED
    if _COMPILED is None:
        from torch.nn.attention.flex_attention import flex_attention

        _COMPILED = torch.compile(flex_attention, dynamic=False)
    return _COMPILED
