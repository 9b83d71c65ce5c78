"""Attention types: fast path == plain reference (forward and gradients), causality, incremental
decoding == recomputation, the sparse pattern by its definition, bad configuration."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.attention import ATTENTION, AttentionError, make_attention

CONFIGS = [
    ("standard", {}),
    ("sparse", {}),
    ("sparse", {"path": "blocks"}),
    ("sparse", {"block": 5, "summary": 2, "path": "blocks"}),
    ("sparse", {"block": 5, "summary": 2, "path": "dense"}),
    ("sparse", {"pattern": "strided", "path": "blocks"}),
    ("sparse", {"pattern": "strided", "block": 4, "path": "blocks"}),
    ("sparse", {"pattern": "strided", "block": 4, "path": "dense"}),
    ("linear", {}),
    ("linear", {"chunk": 7}),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in opts.items()) or 'default'}" for name, opts in CONFIGS]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / (b.double().norm() + 1e-30)).item()


def qkv(batch, heads, length, dim, dtype, seed, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, length, dim, generator=g, dtype=torch.float64).to(dtype)
            .requires_grad_(requires_grad) for _ in range(3)]


@pytest.mark.parametrize(("name", "options"), CONFIGS, ids=IDS)
@pytest.mark.parametrize(("length", "heads", "dim"), [(1, 1, 4), (9, 2, 8), (37, 4, 16), (100, 3, 32)])
def test_fast_equals_reference_float32(name, options, length, heads, dim):
    att = make_attention(name, 128, **options)
    q, k, v = qkv(2, heads, length, dim, torch.float32, seed=length * 31 + dim, requires_grad=True)
    fast, ref = att(q, k, v), att.reference(q, k, v)
    assert rel(fast, ref) < 1e-4
    grad = torch.randn_like(fast)
    for a, b in zip(torch.autograd.grad(fast, (q, k, v), grad), torch.autograd.grad(ref, (q, k, v), grad)):
        assert (a - b).norm() <= 1e-4 * b.norm() + 1e-6


@pytest.mark.parametrize(("name", "options"), CONFIGS, ids=IDS)
def test_fast_equals_float64_reference_in_bf16(name, options):
    att = make_attention(name, 256, **options)
    q, k, v = qkv(2, 4, 200, 32, torch.float64, seed=5)
    ref = att.reference(q, k, v)
    fast = att(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert fast.dtype == torch.bfloat16
    assert rel(fast, ref) < 1e-2


@pytest.mark.parametrize(("name", "options"), CONFIGS, ids=IDS)
def test_causal(name, options):
    """Changing the keys and values after position t leaves outputs up to t unchanged."""
    att = make_attention(name, 64, **options)
    q, k, v = qkv(1, 2, 50, 8, torch.float64, seed=3)
    base = att(q, k, v)
    for t in (0, 17, 31, 48):
        k2, v2, q2 = k.clone(), v.clone(), q.clone()
        k2[:, :, t + 1 :] += torch.randn_like(k2[:, :, t + 1 :])
        v2[:, :, t + 1 :] -= 3.0
        q2[:, :, t + 1 :] *= -1
        assert torch.allclose(att(q2, k2, v2)[:, :, : t + 1], base[:, :, : t + 1], atol=1e-12)


@pytest.mark.parametrize(("name", "options"), CONFIGS, ids=IDS)
def test_incremental_decoding_equals_recomputation(name, options):
    att = make_attention(name, 64, **options)
    q, k, v = qkv(2, 3, 45, 8, torch.float64, seed=9)
    state = att.init_state(2, 3, 8, "cpu", torch.float64)
    steps = []
    for t in range(45):
        out, state = att.step(q[:, :, t : t + 1], k[:, :, t : t + 1], v[:, :, t : t + 1], state)
        steps.append(out)
    assert rel(torch.cat(steps, dim=2), att(q, k, v)) < 1e-12


@pytest.mark.parametrize("pattern", ["fixed", "strided"])
@pytest.mark.parametrize(("block", "summary"), [(1, 1), (3, 1), (4, 2), (7, 3)])
def test_sparse_pattern_matches_its_definition(pattern, block, summary):
    att = make_attention("sparse", 64, block=block, summary=summary, pattern=pattern)
    mask = att.mask(40)
    for i in range(40):
        for j in range(40):
            if j > i:
                want = False
            elif pattern == "fixed":  # own block, or one of the last `summary` positions of a block
                want = j // block == i // block or j % block >= block - summary
            else:  # the previous `block` positions, or a multiple of `block` back
                want = i - j < block or (i - j) % block == 0
            assert bool(mask[i, j]) == want, (i, j)


def test_sparse_default_block_is_sqrt_of_max_len():
    assert make_attention("sparse", 1000).block == math.ceil(math.sqrt(1000))
    assert make_attention("sparse", 256).block == 16


def test_sparse_attends_to_order_sqrt_l_positions():
    att = make_attention("sparse", 4096)
    per_query = att.mask(4096).sum(1)
    assert per_query.max() <= 2 * 64


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("nope", {}, "unknown attention"),
        ("sparse", {"block": 0}, "block"),
        ("sparse", {"block": 4, "summary": 5}, "summary"),
        ("sparse", {"pattern": "diagonal"}, "pattern"),
        ("sparse", {"path": "fast"}, "path"),
        ("sparse", {"pattern": "strided", "path": "flex"}, "flex"),
        ("linear", {"chunk": 0}, "chunk"),
        ("standard", {"block": 4}, "block"),
    ],
)
def test_bad_configuration(name, options, message):
    with pytest.raises(AttentionError, match=message):
        make_attention(name, 64, **options)


def test_registry_names():
    assert set(ATTENTION) == {"standard", "sparse", "linear"}


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_linear_benchmark_variants_are_chunk_sizes_that_compute_the_reference(device):
    variants = ATTENTION["linear"].benchmark_variants(device)
    assert next(iter(variants)) == "linear" and variants["linear"] == {}
    assert set(variants) == ({"linear"} if device == "cpu" else {"linear", "linear_c32", "linear_c64", "linear_c512"})
    q, k, v = qkv(2, 2, 150, 8, torch.float64, seed=3)
    for options in variants.values():
        att = make_attention("linear", 150, **options)
        assert rel(att(q, k, v), att.reference(q, k, v)) < 1e-10


@pytest.mark.parametrize("chunk", [128, 64, 7])
def test_linear_attention_stays_finite_where_features_underflow(chunk):
    """Keys and queries far below 0 (features exp(x) ~ 1e-9): elu(x) + 1 used to cancel to exactly 0
    in float32, and a first position whose only key was 0 divided 0 by 0; the NaN reached every later
    position through the next layer's values. Fast path, decoding and gradients match float64."""
    att = make_attention("linear", 64, chunk=chunk)
    q, k, v = qkv(2, 2, 40, 8, torch.float64, seed=11)
    k[:, :, 0] = -20.0 - torch.rand_like(k[:, :, 0])  # the first position's only key
    q[:, :, 5] = -20.0 - torch.rand_like(q[:, :, 5])  # a query whose every feature is ~1e-9
    q32, k32, v32 = (t.float().requires_grad_(True) for t in (q, k, v))
    fast, ref = att(q32, k32, v32), att.reference(q, k, v)
    assert torch.isfinite(fast).all() and rel(fast, ref) < 1e-4
    grad = torch.randn_like(fast)
    gq, gk, gv = (t.double().requires_grad_(True) for t in (q, k, v))
    for a, b in zip(torch.autograd.grad(fast, (q32, k32, v32), grad),
                    torch.autograd.grad(att.reference(gq, gk, gv), (gq, gk, gv), grad.double())):
        assert torch.isfinite(a).all() and (a - b).norm() <= 1e-4 * b.norm() + 1e-6
    state = att.init_state(2, 2, 8, "cpu", torch.float32)
    steps = []
    for t in range(40):
        out, state = att.step(q32[:, :, t:t + 1], k32[:, :, t:t + 1], v32[:, :, t:t + 1], state)
        steps.append(out)
    assert rel(torch.cat(steps, dim=2), ref) < 1e-4


def test_linear_attention_output_is_zero_not_nan_where_every_feature_is_zero():
    att = make_attention("linear", 16)
    q, k, v = qkv(1, 1, 4, 4, torch.float32, seed=2)
    k[:, :, 0] = -200.0  # exp underflows to 0 even in the exact form: 0 / 0 at position 0
    out = att(q, k, v)
    assert torch.isfinite(out).all() and (out[:, :, 0] == 0).all()
