"""Causal linear attention (Katharopoulos et al. 2020): softmax replaced by phi(x) = elu(x) + 1.

out_i = phi(q_i) . sum_{j<=i} phi(k_j) v_j^T / phi(q_i) . sum_{j<=i} phi(k_j)

The fast path is chunked: inside a chunk of C positions the quadratic form (C x C), across chunks a
running state (dim x dim) and normaliser (dim). Cost O(L C d + L d^2), plain PyTorch, so it runs
and differentiates on the CPU and the GPU alike (a GPU training step compiles it with the rest of
the model: `training.compiled_loss`). Sums are kept in float32 whatever the input type.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Attention, AttentionError, wide


def phi(x: torch.Tensor) -> torch.Tensor:
    """elu(x) + 1, written as x + 1 above 0 and exp(x) below: `F.elu(x) + 1` cancels to exactly 0 in
    float32 below x = -17, and a query or key whose every feature is 0 divides 0 by 0 (a first
    position's only key, say): the NaN that diverged linear training in the schedule study. The clamp
    keeps exp's unused branch finite, so its gradient is 0, not NaN."""
    return torch.where(x > 0, x + 1, torch.exp(x.clamp(max=0)))


def normalised(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den where den > 0; where den underflowed to 0 (num is 0 there too), 0 instead of NaN."""
    return num / den.clamp(min=torch.finfo(den.dtype).tiny).unsqueeze(-1)


def exclusive_cumsum(x: torch.Tensor) -> torch.Tensor:
    """Sums over the chunks before each chunk (dim 2), the first chunk's a constant 0. Not
    `cumsum(x) - x`: where a position's only key has features near 0, its normaliser is tiny and the
    gradient of its chunk's state is huge; the subtraction sent that gradient, cancelled only up to
    float32 rounding, into every earlier chunk's keys and values."""
    return torch.cat([torch.zeros_like(x[:, :, :1]), x[:, :, :-1].cumsum(2)], dim=2)


class LinearAttention(Attention):
    name = "linear"
    label = "Linear Transformer"

    def mixing_flops(self, length: int, width: int, heads: int) -> int:
        """Recurrent form: the state update phi(k) v^T and the read-out phi(q) S, 2 d^2 each per head,
        plus the normaliser phi(q) . z, 2 d per head: 4 W d + 2 W per position."""
        return length * (4 * width * (width // heads) + 2 * width)

    def __init__(self, max_len: int, chunk: int = 128) -> None:
        super().__init__(max_len)
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise AttentionError(f"linear chunk size must be an integer >= 1, got {chunk!r}")
        self.chunk = chunk

    def options(self) -> dict:
        return {"chunk": self.chunk}

    @classmethod
    def benchmark_variants(cls, device: str) -> dict[str, dict]:
        # on the GPU, other chunk sizes beside the default 128 (the fastest of 32-512 at w1024 L=212 by
        # 10%, level with 64 at w256: `python -m benchmarks train` with chunk variants, on an H200)
        chunks = (32, 64, 512) if device == "cuda" else ()
        return {cls.name: {}, **{f"{cls.name}_c{c}": {"chunk": c} for c in chunks}}

    def reference(self, q, k, v):
        fq, fk = phi(q.double()), phi(k.double())
        length = q.shape[2]
        a = (fq @ fk.transpose(-1, -2)) * torch.ones(length, length, dtype=torch.bool, device=q.device).tril()
        return ((a @ v.double()) / a.sum(-1, keepdim=True)).to(v.dtype)

    def forward(self, q, k, v):
        return self.chunked(q, k, v)

    def chunked(self, q, k, v):
        batch, heads, length, dim = q.shape
        acc = wide(q).dtype
        c = min(self.chunk, length)  # a sequence shorter than a chunk is one chunk, unpadded
        nc = -(-length // c)
        pad = nc * c - length
        # Padding after phi: padded keys are 0 and add nothing to any state; padded queries are 1 so
        # that their (discarded) rows never divide 0 by 0, which would put NaN into the gradients.
        fq = F.pad(phi(q.to(acc)), (0, 0, 0, pad), value=1.0).view(batch, heads, nc, c, dim)
        fk = F.pad(phi(k.to(acc)), (0, 0, 0, pad)).view(batch, heads, nc, c, dim)
        vv = F.pad(v.to(acc), (0, 0, 0, pad)).view(batch, heads, nc, c, dim)
        causal = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
        a = (fq @ fk.transpose(-1, -2)).masked_fill(~causal, 0.0)  # (.., nc, c, c)
        num = a @ vv
        den = a.sum(-1)
        # state before each chunk: exclusive running sums over chunks
        state = exclusive_cumsum(fk.transpose(-1, -2) @ vv)  # (.., nc, dim, dim)
        norm = exclusive_cumsum(fk.sum(3))  # (.., nc, dim)
        num = num + fq @ state
        den = den + (fq @ norm.unsqueeze(-1)).squeeze(-1)
        out = normalised(num, den).view(batch, heads, nc * c, dim)[:, :, :length]
        return out.to(v.dtype)

    def init_state(self, batch, heads, head_dim, device, dtype):
        acc = torch.promote_types(dtype, torch.float32)
        zeros = torch.zeros(batch, heads, head_dim, head_dim, device=device, dtype=acc)
        return zeros, torch.zeros(batch, heads, head_dim, device=device, dtype=acc)

    def step(self, q, k, v, state):
        kv, norm = state
        acc = kv.dtype
        fq, fk = phi(q.to(acc)[:, :, 0]), phi(k.to(acc)[:, :, 0])
        # written as matrix products (outer product, read-out, normaliser) so FLOP counters see them
        kv = kv + fk.unsqueeze(-1) @ v.to(acc)[:, :, 0].unsqueeze(-2)
        norm = norm + fk
        out = normalised((fq.unsqueeze(-2) @ kv).squeeze(-2), (fq.unsqueeze(-2) @ norm.unsqueeze(-1)).squeeze(-1, -2))
        return out.unsqueeze(2).to(v.dtype), (kv, norm)
