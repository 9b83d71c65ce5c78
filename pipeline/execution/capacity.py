"""How many runs a stage trains or evaluates at once on one GPU under `concurrency: auto`. Each
number that decides it is named here with where it was measured."""

from __future__ import annotations

# Peak GPU memory of one run's training, GiB per (sequence x position x width x layer) of a batch,
# bf16-mixed: the largest measured (benchmarks/results/throughput.json, H200, batch 512) is 6.1e-8,
# linear w1024 L=212; this leaves a margin above it.
PEAK_GIB_PER_UNIT = 7e-8
FIXED_GIB = 0.5  # a process's CUDA context, weights and optimiser state at these widths
# The share of a GPU's memory the runs on it may take together: the rest for each process's CUDA
# context and the caching allocator's fragmentation, neither of which the estimate above counts.
MEMORY_SHARE = 0.85
# Runs at once on one GPU at most. Small models (widths 32-128) are bound by kernel launches, about
# 6 ms a step alone whatever the width, so several processes overlap on one GPU, through CUDA MPS best
# (12 runs: 1.28 times faster than time-sliced, benchmarks/results/sweep_h100_c12*.json). Measured in
# shards of the paper profile on an H100 under MPS (docs/benchmarks.md, "Sharing one GPU"): 8 runs of
# w32 (ED n=6, 12, 16) did 1.11 times the work of one alone; 4 of them (ED n=6, 12) 1.70 times, and
# each run 3.3-3.8 times faster than among 8. Fewer at once also finish, and land, sooner.
RUNS_PER_GPU = 4
# How much sharing one GPU speeds up runs of widths up to LAUNCH_BOUND_WIDTH, for the slowest of them:
# k runs at once each take k / SHARED_GAIN times its `predict-hours` price alone (at least 1 time).
# Measured in shards of the paper profile, in ms a step each with the price alone in brackets:
# - 4 runs of ED n=6 on an H200 (f00616c): standard w32 11.6 (5.3), w64 7.6 (5.4); linear w32 16.9
#   (5.1), w64 8.2 (5.6). Together 2.2 times the steps of one alone; the slowest 3.3 times its price.
# - 8 runs of w32, ED n=6, 12 and 16, on an H100 through CUDA MPS (bcf1ad3): standard and sparse 37-43
#   (5.3-9.1), linear 68 and 73 (5.1). Together 1.11 times the work of one alone.
# - 4 runs of w32 on an H100 through MPS (7337c07): ED n=6 standard 11.0 (5.3), sparse 11.6 (5.7),
#   linear 18.1 (5.1), n=12 standard 11.8 (5.3): 1.70 times. ED n=12 sparse 30.8 (5.7), linear 51.7
#   (5.1), n=16 standard 29.7 (8.4), sparse 31.1 (9.1): 0.86 times, the longer sequences fill the GPU
#   (the prices are an H200's, whose memory is 1.4 times as fast as an H100's).
#   The slowest, linear n=12, 10.1 times its price: 4 / 10.1 = 0.40.
# A shard must bound the slowest, so the lowest gain holds. Wider runs are bound by arithmetic, and
# sharing gains them nothing (1.0).
SHARED_GAIN = 0.40
LAUNCH_BOUND_WIDTH = 128


def peak_gib(batch: int, length: int, width: int, layers: int) -> float:
    """Estimated peak GPU memory of one run's training (activations dominate)."""
    return PEAK_GIB_PER_UNIT * batch * length * width * layers + FIXED_GIB


def gpu_workers(runs: int, largest_gib: float, device_gib: float, cap: int = RUNS_PER_GPU) -> int:
    """Runs at once on one GPU: up to `cap`, and no more than fit in `MEMORY_SHARE` of its memory
    when every process trains the sweep's largest run."""
    return max(1, min(cap, runs, int(MEMORY_SHARE * device_gib // largest_gib)))


BYTES_PER_PARAMETER = 16  # float32 weights and gradients, and AdamW's two moments


def memory_gib(batch: int, length: int, width: int, layers: int, vocab: int) -> float:
    """A run's training memory at least: its estimated peak activations and its weights, gradients
    and optimiser state (about 12 width^2 parameters a layer, plus the embedding and the head)."""
    parameters = layers * 12 * width * width + 2 * vocab * width
    return peak_gib(batch, length, width, layers) + BYTES_PER_PARAMETER * parameters / 2**30


def device_gib() -> tuple[str, float]:
    """The training device and its memory: the first GPU's, else this machine's RAM."""
    import os

    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).total_memory / 2**30
    return "this machine's memory", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
