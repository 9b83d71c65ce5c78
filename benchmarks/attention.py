"""Attention scaling benchmark: forward + backward time and peak memory of one attention layer's
mixing (q, k, v -> output; the projections are the same for every type and left out) over sequence
lengths at a fixed number of tokens per batch, and the fitted exponent of time per sequence in L.

    python -m benchmarks attention                      # GPU: L = 256 .. 65536, bf16
    python -m benchmarks attention --device cpu         # CPU: a shorter range, float32

Writes benchmarks/results/attention.json (records, exponents, crossovers, provenance) and a log-log
plot next to it. Timing follows the usual method: warm-up first, then the median of repeated runs,
with CUDA events on the GPU.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import torch

from pipeline.attention import ATTENTION, make_attention
from pipeline.provenance import git_rev
from pipeline.report.collect import fit_power_law


def variants(device: str) -> dict[str, tuple[str, dict]]:
    """Implementations timed, as each registered type offers them: the name in the records, the
    attention type and its options (the type's own name is its training path)."""
    out = {}
    for name, cls in ATTENTION.items():
        out.update({label: (name, options) for label, options in cls.benchmark_variants(device).items()})
    return out


def time_ms(fn, device: str, warmup: int, repeat: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def measure(kind: str, options: dict, length: int, tokens: int, heads: int, head_dim: int, dtype,
            device: str, warmup: int, repeat: int) -> dict:
    batch = max(1, tokens // length)
    att = make_attention(kind, length, **options)
    gen = torch.Generator(device=device).manual_seed(length)
    # several input sets in rotation, so that repeated runs do not just measure the cache
    sets = []
    for _ in range(2):
        q, k, v = (torch.randn(batch, heads, length, head_dim, device=device, dtype=dtype, generator=gen)
                   .requires_grad_() for _ in range(3))
        sets.append((q, k, v, torch.randn(batch, heads, length, head_dim, device=device, dtype=dtype, generator=gen)))
    turn = [0]

    def step():
        q, k, v, g = sets[turn[0] % len(sets)]
        turn[0] += 1
        out = att(q, k, v)
        out.backward(g)

    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    ms = time_ms(step, device, warmup, repeat)
    peak = torch.cuda.max_memory_allocated() - base if device == "cuda" else 0
    return {"L": length, "batch": batch, "ms": ms, "ms_per_sequence": ms / batch, "peak_mem_bytes": int(peak)}


def fit_exponent(records: list[dict]) -> float | None:
    """Least-squares slope of log(time per sequence) against log(L)."""
    return fit_power_law([r["L"] for r in records], [r["ms_per_sequence"] for r in records])


def run(out: Path, device: str, lengths: list[int], tokens: int, width: int = 256, heads: int = 4,
        warmup: int = 3, repeat: int = 10, git: str | None = None) -> dict:
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if device == "cuda":
        torch._dynamo.config.cache_size_limit = 64  # one FlexAttention compilation per length
    head_dim = width // heads
    records, failures = [], []
    for name, (kind, options) in variants(device).items():
        for length in lengths:
            try:
                r = measure(kind, options, length, tokens, heads, head_dim, dtype, device, warmup, repeat)
            except torch.OutOfMemoryError:
                failures.append({"attention": name, "L": length, "error": "out of memory"})
                torch.cuda.empty_cache()
                continue
            records.append({"attention": name, **options, **r})
            print(f"{name:<14}L={length:>6}  batch={r['batch']:>4}  {r['ms']:9.3f} ms  "
                  f"peak {r['peak_mem_bytes'] / 2**20:9.1f} MiB", flush=True)
    names = sorted({r["attention"] for r in records}, key=list(variants(device)).index)
    exponents = {n: fit_exponent([r for r in records if r["attention"] == n]) for n in names}
    standard = {r["L"]: r["ms"] for r in records if r["attention"] == "standard"}
    crossover, speedup_at_max = {}, {}
    for n in names:
        if n == "standard":
            continue
        mine = {r["L"]: r["ms"] for r in records if r["attention"] == n}
        faster = [length for length in sorted(mine) if length in standard and mine[length] < standard[length]]
        crossover[n] = faster[0] if faster else None
        top = max(set(mine) & set(standard), default=None)
        speedup_at_max[n] = {"L": top, "speedup": standard[top] / mine[top]} if top else None
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine(),
        "git_rev": git or git_rev(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "dtype": str(dtype).removeprefix("torch."),
        "width": width, "heads": heads, "head_dim": head_dim, "tokens_per_batch": tokens,
        "timed": "forward + backward of the attention mixing (q, k, v -> out), median of "
                 f"{repeat} runs after {warmup} warm-up runs",
        "command": f"python -m benchmarks attention --device {device}",
        "records": [r for r in records if r["attention"] in ATTENTION],
        "variants": [r for r in records if r["attention"] not in ATTENTION],
        "failures": failures,
        "exponents": {n: e for n, e in exponents.items() if n in ATTENTION},
        "variant_exponents": {n: e for n, e in exponents.items() if n not in ATTENTION},
        "crossover_L": crossover,
        "speedup_at_max_L": speedup_at_max,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("exponents:", {k: round(v, 3) for k, v in exponents.items()})
    print("crossover L:", crossover)
    print("speedup over standard at the largest L:", speedup_at_max)
    return result


def plot(result: dict, path: Path) -> None:
    """Log-log plot of time per sequence against L, one line per type, with the fitted exponents."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    rows = result["records"] + result["variants"]
    exps = {**result["exponents"], **result["variant_exponents"]}
    for name in dict.fromkeys(r["attention"] for r in rows):
        pts = sorted((r["L"], r["ms_per_sequence"]) for r in rows if r["attention"] == name)
        ax.loglog([p[0] for p in pts], [p[1] for p in pts], marker="o", base=2,
                  linestyle="--" if name not in ATTENTION else "-", label=f"{name} (slope {exps[name]:.2f})")
    ax.set_xlabel("sequence length L")
    ax.set_ylabel("forward + backward time per sequence (ms)")
    ax.set_title(f"{result['device']}, {result['dtype']}, {result['tokens_per_batch']} tokens per batch")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.text(0.01, 0.01, f"git {result['git_rev'][:10]}  torch {result['torch']}  {result['command']}", fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
