"""The train stage over several devices: one training through Lightning's DDP strategy
(`train.devices` > 1), and a sweep's runs spread over every GPU of a host.

The processes of a DDP training are started by torchrun (`torch.distributed.run`), the launcher
PyTorch ships: the stage starts it on itself for one host (`launch`), and a user starts it on each
node of a cluster. Every process runs the whole stage; rank 0 alone decides what a run needs (reuse,
resume, start: it reads and writes the bookkeeping) and tells the others (`Group.share`), so no
process decides from files another is writing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any


def distributed() -> bool:
    """Whether this process is one of a distributed launch (torchrun sets WORLD_SIZE in each)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


STOP_SECONDS = 60  # what torchrun's processes get to stop at their next step before they are killed
# torchrun, after asking the kernel to send it SIGTERM once the stage that starts it ends, however it
# ended (PR_SET_PDEATHSIG outlives exec): it then stops its processes as it does on Ctrl-C
LAUNCHER = ("import ctypes, os, signal, sys\n"
            "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
            "if os.getppid() != int(sys.argv[1]):\n"  # the stage ended before the line above took effect
            "    sys.exit(1)\n"
            "os.execv(sys.executable, [sys.executable, '-m', 'torch.distributed.run', *sys.argv[2:]])")


def launch(devices: int, params_path: Path, data: Path, runs: Path, runtime: Path,
           shard: tuple[int, int] | None = None, only: list[str] | None = None) -> int:
    """The stage again, as `devices` processes on this host under torchrun, with the same share of the
    sweep (`shard`, `only`); its exit code. Stopped (SIGINT, SIGTERM), the stage stops torchrun, which
    stops its processes, each at its next step; killed, the kernel does it (`LAUNCHER`); and each
    process dies with torchrun (`runtime.die_with_parent`): none outlives the stage."""
    args = ["--standalone", f"--nproc-per-node={devices}", "-m", "pipeline.stages.train", "--params", str(params_path),
            "--data", str(data), "--runs", str(runs), "--runtime", str(runtime)]
    args += ["--shard", f"{shard[0]}/{shard[1]}"] if shard else []
    args += ["--only", ",".join(only)] if only is not None else []
    linux = sys.platform.startswith("linux")
    command = [sys.executable, "-c", LAUNCHER, str(os.getpid()), *args] if linux else \
        [sys.executable, "-m", "torch.distributed.run", *args]
    process = subprocess.Popen(command, env=child_env())
    try:
        return process.wait()
    except BaseException:  # asked to stop, or failed: torchrun stops its processes first
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()  # and its processes with it
            process.wait()
        raise


def child_env() -> dict:
    """This process's environment for a child process of the project, without WANDB_SERVICE: each
    process starts its own W&B service, since one inherited from here (set by a W&B run here before)
    outlives a killed child and keeps its run "in use" when the child's run resumes."""
    return {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}


class Group:
    """This process's place in a distributed launch, and the messages rank 0 sends the others."""

    def __init__(self) -> None:
        import torch
        import torch.distributed as dist

        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)  # NCCL: one GPU per process, as Lightning's DDP has it
        else:  # CPU processes share the cores (each would otherwise take them all)
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
        # Lightning's DDP strategy finds this process group initialised and uses it
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def share(self, value: Any) -> Any:
        """Rank 0's `value`, in every process."""
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait until every process is here."""
        import torch.distributed as dist

        dist.barrier()

    def close(self) -> None:
        import torch.distributed as dist

        self.barrier()
        dist.destroy_process_group()


def gpu_slots(workers: int, gpus: int):
    """A queue of the GPUs this process sees, one entry per pool process, spread evenly (`pin_gpu`
    takes one each): a pool process trains all its runs on one GPU."""
    from multiprocessing import get_context

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else [str(i) for i in range(gpus)]
    slots = get_context("spawn").Queue()
    for i in range(workers):
        slots.put(ids[i % len(ids)])
    return slots


def pin_gpu(slots) -> None:
    """In a pool process, before CUDA starts: see only the GPU taken from `slots`."""
    if slots is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = slots.get()
