"""Sharing through a DVC remote: push to a real S3-compatible server on 127.0.0.1 (moto); a
colleague's fresh clone pulls datasets, checkpoints and results and has nothing left to run; shards
of a sweep trained on two machines come together with `gather`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_server():
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        import boto3

        boto3.client("s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing",
                     region_name="us-east-1").create_bucket(Bucket="shared")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(cwd), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "WANDB_MODE": "disabled"}  # W&B: tested elsewhere
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def tiny_project(work: Path, lis_sizes: list[int]) -> dict:
    """A copy of the project without any outputs, its params (returned) cut to tiny LIS datasets."""
    skip = shutil.ignore_patterns(".venv", "data", "runs", "results", "runtime", "metrics*", "wandb", "reports",
                                  "cache", "tmp", "__pycache__", ".pytest_cache", ".hypothesis", "*.egg-info", ".whl",
                                  "dvc.lock")
    shutil.copytree(ROOT, work, ignore=skip)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["generate"].update(train_size=200, val_size=16, test_size=16)
    params["generate"]["tasks"] = {"lis": {"sizes": lis_sizes, "options": {"number_range": None}}}
    return params


def first_commit(work: Path, s3_server: str, message: str) -> None:
    """A new repository on branch main with the S3 remote: reproduce, push, commit."""
    run(["git", "init", "-q", "-b", "main"], work)
    # the copy may hold the checkout's own .git, on any branch: `main` is this commit's branch
    run(["git", "checkout", "-q", "-B", "main"], work)
    run(["dvc", "remote", "add", "-d", "shared", "s3://shared/cache"], work)
    run(["dvc", "remote", "modify", "shared", "endpointurl", s3_server], work)
    run(["dvc", "repro"], work)
    run(["dvc", "push"], work)
    run(["git", "add", "-A"], work)
    run([*GIT, "commit", "-qm", message], work)


@pytest.mark.slow
def test_a_pull_restores_everything_and_shards_come_together_without_training_again(tmp_path, s3_server):
    """Machine A trains LIS n=3 and pushes to git and the remote; machine B pulls it all (nothing to
    run), trains LIS n=5 on a branch and pushes; a third clone asks for the whole sweep, gathers both
    shards and has nothing left to train or evaluate."""
    a = tmp_path / "a"
    params = tiny_project(a, [3, 5])
    params["train"].update(datasets=["lis_n3"], attentions=["standard"], widths=[16], max_steps=6, val_every=3,
                           sweep="shards", concurrency=1)
    params["evaluate"].update(generation_samples=8, concurrency=1)

    def with_datasets(folder: Path, datasets: list[str]) -> None:
        params["train"]["datasets"] = datasets
        (folder / "params.yaml").write_text(yaml.safe_dump(params))

    with_datasets(a, ["lis_n3"])
    first_commit(a, s3_server, "shard A: LIS n=3")

    # a colleague's clone pulls datasets, checkpoints and results, and has nothing left to run
    b = tmp_path / "b"
    run(["git", "clone", "-q", str(a), str(b)], tmp_path)
    assert not (b / "runs").exists() and not (b / "data").exists()
    run(["dvc", "pull"], b)
    for rel in ("data/datasets/lis_n3/train_tokens.npy", "data/datasets/lis_n3/meta.json",
                "runs/lis_n3-standard-w16-s0/model.ckpt", "runs/lis_n3-standard-w16-s0/train.json",
                "results/lis_n3-standard-w16-s0.json", "metrics.json", "reports/report.md"):
        assert (b / rel).read_bytes() == (a / rel).read_bytes(), rel
    assert "up to date" in run(["dvc", "status"], b)
    assert "Running stage" not in run(["dvc", "repro"], b)

    # then trains another share of the sweep on a branch of its own
    run(["git", "checkout", "-q", "-b", "shard-b"], b)
    with_datasets(b, ["lis_n5"])
    assert "lis_n3" not in run(["dvc", "repro"], b)  # trains and evaluates LIS n=5 alone
    run(["dvc", "push"], b)
    run(["git", "add", "-A"], b)
    run([*GIT, "commit", "-qm", "shard B: LIS n=5"], b)
    run(["git", "push", "-q", "origin", "shard-b"], b)

    whole = tmp_path / "whole"
    run(["git", "clone", "-q", str(a), str(whole)], tmp_path)
    run(["dvc", "pull", "data/datasets"], whole)
    with_datasets(whole, ["lis_n3", "lis_n5"])
    out = run([sys.executable, "-m", "pipeline", "gather", "main", "origin/shard-b"], whole)
    assert "origin/shard-b: 2 runs taken so far" in out, out
    for name in ("lis_n3-standard-w16-s0", "lis_n5-standard-w16-s0"):
        assert (whole / "results" / f"{name}.json").exists()
    out = run(["dvc", "repro"], whole)
    assert "steps in" not in out and out.count(": reused") == 4, out  # two runs, trained and evaluated once
    assert (whole / "runs" / "lis_n5-standard-w16-s0" / "model.ckpt").read_bytes() == \
        (b / "runs" / "lis_n5-standard-w16-s0" / "model.ckpt").read_bytes()
    assert json.loads((whole / "metrics.json").read_text())["runs_total"] == 2  # the report has the whole sweep
    # a revision that does not exist is one clear error, and changes nothing
    result = subprocess.run([sys.executable, "-m", "pipeline", "gather", "no-such-branch"], cwd=whole,
                            capture_output=True, text=True)
    assert result.returncode != 0 and result.stderr.startswith("error: gather: revision 'no-such-branch'")
