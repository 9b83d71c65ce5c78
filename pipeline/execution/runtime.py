"""What a person sees while the train and evaluate stages work, and what depends on the machine and
the moment rather than on the inputs (kept in runtime/, apart from the results DVC compares).

Lightning is quiet here: no tips, device notices or per-run warnings; one line per run (the progress
lines of a long run are execution/callbacks.py's). Imports neither torch nor Lightning at the top, so
that a command with bad input fails in a moment.
"""

from __future__ import annotations

import logging
import os
import platform
import signal
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

from ..provenance import git_rev
from .io import say

# Warnings known to be harmless here, each filtered by its message and the module it comes from, so
# that any other warning, from these modules too, still shows.
KNOWN_WARNINGS = (
    # Lightning calls a pytree API that torch has deprecated: nothing of ours to change
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, r"lightning\.pytorch\.utilities\._pytree"),
    # torch's own deprecation of torch.jit, raised while a library decorates its functions at import
    (r"`torch\.jit\.script_method` is deprecated", DeprecationWarning, r"torch\.jit\._script"),
    # a resumed run writes into its own checkpoint folder on purpose
    (r"Checkpoint directory .* exists and is not empty", UserWarning, r"lightning\..*"),
    # the loaders serve in-memory tensors: worker processes would only slow them down
    (r"The '\w+_dataloader' does not have many workers", UserWarning, r"lightning\..*"),
    # the logged validation metrics are torchmetrics objects, which synchronise themselves
    (r"It is recommended to use `self\.log\(.*sync_dist=True`", UserWarning, r"lightning\..*"),
    # an offline W&B run resumes by its id on the local disk
    (r".*resume.*offline.*", UserWarning, r"wandb(\..*)?"),
)


def quiet() -> None:
    """Lightning's notices (device summaries, tips) below the warning level, and the known harmless
    warnings filtered; every other warning shows. Imports Lightning, which sets its loggers to INFO
    as it loads: called once a command has checked its input and is about to train or evaluate."""
    import lightning.pytorch  # noqa: F401

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message, category, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


class Interrupted(KeyboardInterrupt):
    """The stage was asked to stop (SIGINT or SIGTERM): the runs in flight keep their last checkpoint,
    no new run starts, and running the stage again resumes them."""


class Failed(RuntimeError):
    """Some jobs of a stage failed and the others went on (a GPU shard's runs: one run's crash must
    not cost the others): `failures` maps each failed job to its one-line reason."""

    def __init__(self, what: str, failures: dict[str, str], jobs: int) -> None:
        super().__init__(f"{what}: {len(failures)} of {jobs} runs failed ({', '.join(failures)}); the others "
                         "went on")
        self.failures = failures


def one_line(err: BaseException) -> str:
    """An error's type and the first line of its message."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


STOPPING = False  # set once this process has been asked to stop
IDLE = False  # a stage's pool process between jobs: a stop has nothing to interrupt there


def stopping() -> bool:
    return STOPPING


def carry_on() -> None:
    """Forget a stop once it has been handled (a GPU shard's deadline), so that what follows runs."""
    global STOPPING
    STOPPING = False


def _stop(signum, frame) -> None:
    global STOPPING
    if STOPPING:  # a second signal (Ctrl-C pressed twice, or forwarded): the first is being handled
        return
    STOPPING = True
    if IDLE:  # remembered, so that a job that still comes does not start; raising here would
        return  # only print a traceback from the pool's queue
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}")


def busy(fn, *args):
    """`fn(*args)` in a pool process, which a stop interrupts only while it runs."""
    global IDLE
    IDLE = False
    try:
        return fn(*args)
    finally:
        IDLE = True


def interruptible() -> None:
    """SIGINT and SIGTERM both stop this process at its next Python step by raising `Interrupted`
    (Lightning ends a training there); the process remembers it, so that it starts nothing new."""
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)


@contextmanager
def lightning_stops(message: str):
    """Lightning ends a fit or test that it stopped for a KeyboardInterrupt with sys.exit(1), and
    ignores SIGINT from then on: once this process was asked to stop, that exit is `Interrupted`
    (`message`), so that the stage reports it and a pool worker starts nothing new."""
    try:
        yield
    except SystemExit:
        if STOPPING:
            raise Interrupted(message) from None
        raise


def die_with_parent(parent: int) -> None:
    """On Linux, the kernel kills this process (SIGKILL) when the process that started it ends, however
    it ended, SIGKILL included: a stage's workers never outlive it. (W&B's helper, started by a
    worker, watches the worker's pid and ends with it.)"""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent ended before the line above took effect
        os._exit(1)


def worker_setup(workers: int, gpu_slots=None, parent: int | None = None) -> None:
    """A pool process of a stage: dies with the stage (`die_with_parent`), stops on SIGINT and SIGTERM
    (`interruptible`); on a host of several GPUs, one of them (`distributed.gpu_slots`); quiet; and on
    the CPU its share of the cores (torch would take them all in every process, and oversubscribed
    cores run several times slower)."""
    from .distributed import pin_gpu

    global IDLE
    if parent is not None:
        die_with_parent(parent)
    IDLE = True
    interruptible()
    pin_gpu(gpu_slots)  # before torch starts CUDA
    import torch

    quiet()
    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def gpu_count() -> int:
    """GPUs this process sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def stage_pool(workers: int, gpus: int):
    """A stage's pool of `workers` processes (spawned: CUDA does not survive a fork), each set up by
    `worker_setup`; on a host of several GPUs, each pinned to one of them, spread evenly."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from .distributed import gpu_slots

    slots = gpu_slots(workers, gpus) if gpus > 1 else None
    return ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=worker_setup,
                               initargs=(workers, slots, os.getpid()))


def failed(job: str, err: Exception, failures: dict[str, str] | None) -> None:
    """A job's error: raised again, or where `failures` is given, said and put there."""
    if failures is None:
        raise err
    say(f"{job} failed: {one_line(err)}")
    failures[job] = one_line(err)


def run_each(fn, jobs: list[tuple], label, on_result=lambda job, result: result,
             failures: dict[str, str] | None = None) -> list:
    """`run_all` in this process, one job after another."""
    out = []
    for job in jobs:
        try:
            result = fn(*job)
        except Exception as err:  # a job's own error (a stop is a KeyboardInterrupt, not caught here)
            failed(label(job), err, failures)
            continue
        out.append(on_result(job, result))
    return out


def run_all(pool, fn, jobs: list[tuple], label, on_result=lambda job, result: result,
            failures: dict[str, str] | None = None) -> list:
    """`on_result(job, fn(*job))` for every job on `pool`, in order, as the results come; where
    `failures` is given, a job that raises an error is put there (`label(job)` -> `one_line`) and the
    others go on, instead of the first error ending the stage. Interrupted
    (the stage's own SIGINT or SIGTERM, or a worker's): every worker is told to stop (SIGINT: it ends
    its run at the next step, keeping the last checkpoint), no job that has not started starts, and
    `Interrupted` is raised once every worker is idle, naming the jobs (`label(job)`) that were
    stopped or never started."""
    futures = [pool.submit(busy, fn, *job) for job in jobs]
    try:
        out = []
        for job, future in zip(jobs, futures):
            try:
                result = future.result()
            except Exception as err:  # a job's own error (a stop is a KeyboardInterrupt, not caught here)
                failed(label(job), err, failures)
                continue
            out.append(on_result(job, result))
        return out
    except KeyboardInterrupt:
        global STOPPING
        STOPPING = True
        for process in list(getattr(pool, "_processes", {}).values()):  # the executor's own processes
            try:
                os.kill(process.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        pool.shutdown(wait=True, cancel_futures=True)
        stopped = [label(j) for j, f in zip(jobs, futures) if f.cancelled() or not f.done() or f.exception()]
        raise Interrupted(f"interrupted: {len(stopped)} of {len(jobs)} runs stopped or not started "
                          f"({', '.join(stopped)}); run the stage again to resume them") from None


def versions() -> dict:
    import lightning
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "lightning": lightning.__version__}


def device() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def cpu() -> str | None:
    """On the CPU, its model and the threads this process computes with (None on a GPU): they decide a
    run's weights in the last bits, so a CPU of another model, or other threads a run, trains other
    weights from the same inputs."""
    import torch

    if torch.cuda.is_available():
        return None
    model = platform.processor() or platform.machine()
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
        model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), model)
    except OSError:  # not Linux
        pass
    threads = torch.get_num_threads()
    return f"{model}, {threads} thread{'s' if threads > 1 else ''}"


def runtime_info(segments: list[float], peak_gpu_gib: float | None = None) -> dict:
    """The run-dependent record of a training: seconds (every segment), peak GPU memory (None on the
    CPU), device (with the CPU's model and threads, on the CPU), revision, versions."""
    return {"train_seconds": round(sum(segments), 3), "segments": segments, "peak_gpu_gib": peak_gpu_gib,
            "device": device(), "cpu": cpu(), "git_rev": git_rev(), "versions": versions()}
