"""The GPU paths (FlexAttention and the masked fused kernel for sparse, bf16 kernels) against the float64 reference.

Skipped without a GPU; run on the device machine with `pytest tests/test_attention_gpu.py`."""

from __future__ import annotations

import pytest
import torch

from pipeline.attention import make_attention

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CONFIGS = [("standard", {}), ("sparse", {}), ("sparse", {"path": "blocks"}), ("sparse", {"path": "flex"}),
           ("sparse", {"path": "flex", "summary": 3}), ("sparse", {"path": "dense", "summary": 3}),
           ("sparse", {"pattern": "strided", "path": "blocks"}), ("sparse", {"pattern": "strided", "path": "dense"}),
           ("linear", {}), ("linear", {"chunk": 64}), ("linear", {"chunk": 512})]  # 512: one chunk at L=300


def rel(a, b) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


CASES = [(name, options, length) for name, options in CONFIGS
         for length in ([300, 1000] if options.get("path") == "flex" or name == "linear" else [1, 100, 300, 1000])]


@pytest.mark.parametrize(("name", "options", "length"), CASES)  # compiled paths: fewer shapes
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-4), (torch.bfloat16, 1e-2)])
def test_gpu_fast_path_equals_reference(name, options, length, dtype, tol):
    torch.manual_seed(length)
    att = make_attention(name, 1024, **options)
    q, k, v = (torch.randn(2, 4, length, 64, device="cuda", dtype=torch.float64) for _ in range(3))
    grad = torch.randn(2, 4, length, 64, device="cuda", dtype=torch.float64)
    ref_in = [t.clone().requires_grad_() for t in (q, k, v)]
    ref = att.reference(*ref_in)
    ref_grads = torch.autograd.grad(ref, ref_in, grad)
    fast_in = [t.to(dtype).requires_grad_() for t in (q, k, v)]
    fast = att(*fast_in)
    assert fast.dtype == dtype and torch.isfinite(fast).all()
    fast_grads = torch.autograd.grad(fast, fast_in, grad.to(dtype))
    assert rel(fast, ref) < tol
    for a, b in zip(fast_grads, ref_grads):
        if b.norm() > 1e-6:
            assert rel(a, b) < tol
