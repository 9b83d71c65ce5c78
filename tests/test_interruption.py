"""Interruption: SIGKILL the train stage at three moments (before the first checkpoint, between two
checkpoints in the middle of a pass over the data, after a later checkpoint) and the generate
stage once; re-running resumes and ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from settings import generate_section, train_section
from wandb_records import summary_of

ROOT = Path(__file__).resolve().parents[1]
# 300 training samples in batches of 32 (stated although they are the helper's defaults: the kills count on
# them): 10 batches a pass, so most checkpoints fall in the middle of a pass
TRAIN = train_section(sweep="kill", attentions=["linear"], batch_size=32, decay_fraction=0.9, max_steps=48,
                      val_every=4, stop_at=1.0, val_generation=8)
GENERATE = generate_section(train_size=300)
RUN = "lis_n5-linear-w16-s0"


def start(args: list[str], cwd: Path, extra_env: dict | None = None) -> subprocess.Popen:
    # not the W&B service of this pytest process (WANDB_SERVICE, left by an in-process test's run):
    # a killed child's run would stay "in use" there, and its resumed segment could not continue it
    env = {**{k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}, "PYTHONPATH": str(ROOT),
           "WANDB_MODE": "offline", **(extra_env or {})}
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return err


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"finished before it could be killed: {proc.communicate()[1]}"
        assert time.monotonic() < end, "timed out"
        time.sleep(0.002)


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def project(path: Path) -> Path:
    path.mkdir()
    (path / "params.yaml").write_text(yaml.safe_dump({"generate": GENERATE, "train": TRAIN}))
    write_datasets(path)
    return path


def write_datasets(path: Path) -> None:
    """The generate stage's own files, written in this process: without a process's start-up."""
    from pipeline.generation import tasks_of, write_dataset
    from pipeline.params import GenerateParams

    spec = GenerateParams.parse(GENERATE)
    for dataset, task in tasks_of(spec):
        write_dataset(task, spec.sizes, spec.seed, path / "data" / "datasets" / dataset.name)


def mtime(path: Path) -> tuple | int:
    """Changes whenever the file is written again (Lightning writes a new file and renames it)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return 0
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


@pytest.mark.slow
def test_killed_training_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    import torch

    whole = project(tmp_path / "whole")
    finish(start(["train"], whole))
    cut = project(tmp_path / "cut")
    folder = cut / "runs" / RUN
    last = folder / "checkpoints" / "last.ckpt"

    # 1: before the first checkpoint
    proc = start(["train"], cut)
    wait_for(lambda: (folder / "resume.json").exists(), proc)
    kill(proc)
    # 2: just after the first checkpoint (step 4, in the middle of the first pass), before the next
    proc = start(["train"], cut)
    wait_for(last.exists, proc)
    time.sleep(0.05)
    kill(proc)
    assert last.exists() and not (folder / "train.json").exists()
    # 3: after two more checkpoints of the resumed segment
    proc = start(["train"], cut)
    seen = [mtime(last)]
    wait_for(lambda: (seen.append(mtime(last)) or len(set(seen) - {0}) >= 3), proc)
    kill(proc)
    step = torch.load(last, weights_only=False)["global_step"]
    assert 4 < step < TRAIN["max_steps"] and step % 10, step  # resumed, and not at a pass boundary
    err = finish(start(["train"], cut))
    assert "Lightning" not in err and "Warning" not in err, err

    a = json.loads((whole / "runs" / RUN / "train.json").read_text())
    b = json.loads((folder / "train.json").read_text())
    assert a == b  # steps, best step, best validation accuracy, checkpoint checksum
    assert (whole / "runs" / RUN / "model.ckpt").read_bytes() == (folder / "model.ckpt").read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["model.ckpt", "train.json"]  # no trainer state left

    timing = json.loads((cut / "runtime" / "train" / f"{RUN}.json").read_text())
    assert len(timing["segments"]) == 4 and all(s >= 0 for s in timing["segments"])
    assert timing["train_seconds"] == pytest.approx(sum(timing["segments"]), abs=1e-6)
    assert timing["segments"][1] > 0 and timing["segments"][2] > 0  # killed segments count

    # W&B: one run for the training, resumed in every segment, not four
    files = sorted((cut / "wandb").rglob("run-*.wandb"))  # run-<id>.wandb, one per segment
    assert len({f.stem.removeprefix("run-") for f in files}) == 1, files
    assert summary_of(files[-1])["summary"]["steps"] == TRAIN["max_steps"]

    # the evaluations agree too
    for path in (whole, cut):
        (path / "params.yaml").write_text(yaml.safe_dump({"generate": GENERATE, "train": TRAIN, "evaluate": {
            "batch_size": 64, "generation_samples": 16, "concurrency": 1}}))
        finish(start(["evaluate"], path))
    assert (whole / "results" / f"{RUN}.json").read_bytes() == (cut / "results" / f"{RUN}.json").read_bytes()


@pytest.mark.slow
def test_killed_generation_leaves_no_temporary_folder(tmp_path):
    big = generate_section(train_size=400_000, tasks={"lis": {"sizes": [60], "options": {"number_range": None}}})
    for name in ("whole", "cut"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "params.yaml").write_text(yaml.safe_dump({"generate": big}))
    finish(start(["generate"], tmp_path / "whole"))
    out = tmp_path / "cut" / "data" / "datasets"
    proc = start(["generate"], tmp_path / "cut")
    wait_for(lambda: out.is_dir() and any(p.name.startswith(".lis_n60.tmp-") for p in out.iterdir()), proc)
    time.sleep(0.2)
    kill(proc)
    assert [p.name for p in out.iterdir() if ".tmp-" in p.name], "the kill should leave a temporary folder"
    err = finish(start(["generate"], tmp_path / "cut"))
    assert "left by an interrupted run" in err
    assert sorted(p.name for p in out.iterdir()) == ["lis_n60"]
    whole = tmp_path / "whole" / "data" / "datasets" / "lis_n60"
    assert (whole / "meta.json").read_bytes() == (out / "lis_n60" / "meta.json").read_bytes()


def test_temporary_files_of_a_killed_writer_are_removed_before_writing(tmp_path):
    from pipeline.execution.io import remove_temporaries

    (tmp_path / "run").mkdir()
    run = tmp_path / "run"
    left = [tmp_path / ".metrics.json.tmp-123", run / ".train.json.tmp-9", run / ".model.ckpt.tmp"]
    kept = [tmp_path / "run" / "train.json", tmp_path / "run" / "model.ckpt", tmp_path / "notes.tmp"]
    for path in left + kept:
        path.write_text("x")
    remove_temporaries(tmp_path)
    assert not any(p.exists() for p in left) and all(p.exists() for p in kept)


# Two workers train four runs side by side; long enough to be stopped in the middle.
POOL_TRAIN = train_section(sweep="pool", attentions=["standard", "linear"], widths=[16, 24], batch_size=32,
                           max_steps=80, val_every=20, stop_at=1.0, val_generation=4, concurrency=2)
POOL_RUNS = sorted(f"lis_n5-{a}-w{w}-s0" for a in ("standard", "linear") for w in (16, 24))


def pool_project(path: Path, marker: str | None = None) -> tuple[Path, dict]:
    path.mkdir()
    (path / "params.yaml").write_text(yaml.safe_dump({"generate": GENERATE, "train": POOL_TRAIN}))
    write_datasets(path)
    return path, {"PIPELINE_TEST_MARK": marker} if marker else {}


def marked(marker: str) -> list[int]:
    """Processes whose environment carries `marker`: the stage, its workers and their W&B helpers."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f"PIPELINE_TEST_MARK={marker}".encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:  # gone, or not ours to read
            pass
    return found


def none_left(marker: str, seconds: float = 5.0) -> list[int]:
    end = time.monotonic() + seconds
    while marked(marker) and time.monotonic() < end:
        time.sleep(0.1)
    return marked(marker)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, dict]:
    path, _ = pool_project(tmp_path_factory.mktemp("pool") / "whole")
    finish(start(["train"], path))
    return {run: json.loads((path / "runs" / run / "train.json").read_text()) for run in POOL_RUNS}


def started(path: Path, proc: subprocess.Popen) -> None:
    """Both workers are training, and one run has a checkpoint to resume from."""
    runs = path / "runs"
    wait_for(lambda: len(list(runs.glob("*/resume.json"))) >= 2 and any(runs.glob("*/checkpoints/last.ckpt")), proc)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT", "SIGTERM"])
def test_a_stopped_stage_leaves_nothing_running_and_resumes_exactly(tmp_path, uninterrupted, how):
    import uuid

    marker = uuid.uuid4().hex
    path, env = pool_project(tmp_path / "cut", marker)
    proc = start(["train"], path, env)
    started(path, proc)
    sent = time.monotonic()
    proc.send_signal(getattr(signal, how))
    out, err = proc.communicate(timeout=60)
    if how != "SIGKILL":  # asked to stop: within seconds, naming every run it stopped or did not start
        assert time.monotonic() - sent < 10 and proc.returncode == 130, err
        last = err.strip().splitlines()[-1]
        assert last.startswith("interrupted: ") and last.endswith("run the stage again to resume them"), err
        unfinished = [r for r in POOL_RUNS if not (path / "runs" / r / "train.json").exists()]
        assert unfinished and sorted(r for r in POOL_RUNS if r in last) == unfinished, (last, unfinished)
    assert none_left(marker) == [], "processes left behind"
    if how == "SIGTERM":  # resumes as after SIGINT: the same checkpoints, the same stop
        return
    finish(start(["train"], path))
    for run in POOL_RUNS:
        assert json.loads((path / "runs" / run / "train.json").read_text()) == uninterrupted[run], run


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_stopped_ddp_training_leaves_none_of_torchruns_processes_running(tmp_path, how):
    """train.devices: 2 (torchrun and two processes, on the CPU): stopped, the stage stops them first;
    killed, the kernel tells torchrun, which stops them (within its own 30 s grace)."""
    import uuid

    marker = uuid.uuid4().hex
    path = tmp_path / "ddp"
    path.mkdir()
    train = {**TRAIN, "sweep": "ddp", "devices": 2, "max_steps": 100000, "val_every": 1000}
    (path / "params.yaml").write_text(yaml.safe_dump({"generate": GENERATE, "train": train}))
    write_datasets(path)
    proc = start(["train"], path, {"PIPELINE_TEST_MARK": marker})
    wait_for(lambda: (path / "runs" / RUN / "resume.json").exists(), proc)  # torchrun's processes train
    assert len(marked(marker)) >= 4  # the stage, the launcher that became torchrun, two processes
    proc.send_signal(getattr(signal, how))
    out, err = proc.communicate(timeout=120)
    if how == "SIGTERM":
        assert proc.returncode == 130 and err.strip().splitlines()[-1].startswith("interrupted"), err
    assert none_left(marker, seconds=60) == [], "processes left behind"


def _tenth(x: int) -> int:
    return 10 // x


def test_a_jobs_error_ends_the_stage_or_where_asked_is_kept_and_the_others_go_on():
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.execution.runtime import run_all, run_each

    jobs = [(5,), (0,), (2,)]
    label = lambda job: f"job{job[0]}"  # noqa: E731
    for run in (run_each, lambda *a, **k: run_all(ThreadPoolExecutor(2), *a, **k)):
        with pytest.raises(ZeroDivisionError):
            run(_tenth, jobs, label)
        failures: dict[str, str] = {}
        assert run(_tenth, jobs, label, lambda job, result: (job[0], result), failures) == [(5, 2), (2, 5)]
        assert failures == {"job0": "ZeroDivisionError: integer division or modulo by zero"}
