"""End to end: a real `dvc repro` of the whole pipeline in a temporary git clone of the project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from wandb_records import summary_of

ROOT = Path(__file__).resolve().parents[1]
SECRET = f"secret-{uuid.uuid4().hex}"  # made at run time, so it is in no source file


def run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(cwd), "DVC_NO_ANALYTICS": "1", "WANDB_API_KEY": SECRET}
    env.pop("WANDB_MODE", None)  # the default must be offline on its own
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `python` and `dvc` = this venv
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def tiny_params(work: Path, widths: list[int]) -> dict:
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["generate"].update(train_size=300, val_size=24, test_size=24)
    params["generate"]["tasks"] = {"ed": {"sizes": [4], "options": {"using": 8}},
                                   "lis": {"sizes": [6], "options": {"number_range": None}}}
    params["train"].update(datasets=["ed_n4", "lis_n6"], widths=widths, max_steps=12, val_every=6, val_generation=8)
    params["evaluate"].update(generation_samples=12)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    return params


@pytest.mark.slow
def test_dvc_repro_runs_the_whole_pipeline_and_only_what_changed(tmp_path):
    work = tmp_path / "project"
    skip = shutil.ignore_patterns(".venv", "data", "runs", "metrics", "wandb", "reports", "cache", "tmp", "__pycache__",
                                  ".pytest_cache", ".hypothesis", "*.egg-info", ".whl", "dvc.lock")
    shutil.copytree(ROOT, work, ignore=skip)
    params = tiny_params(work, [16])
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    run(["git", "init", "-q"], work)
    run(["git", "add", "-A"], work)
    run([*git, "commit", "-qm", "snapshot"], work)

    out = run(["dvc", "repro"], work)
    for stage in ("generate", "train", "evaluate", "report"):
        assert f"Running stage '{stage}'" in out
    report = (work / "reports" / "report.md").read_text()
    assert "runs: 6" in report and "figures/figure1.png" in report and "figures/figure3.png" in report
    assert {p.name for p in (work / "reports" / "figures").iterdir()} >= {"figure1.png", "figure3.png", "compute.png"}
    runs = sorted(p.name for p in (work / "runs").iterdir())
    assert runs == sorted(f"{d}-{a}-w16-s0" for d in ("ed_n4", "lis_n6") for a in ("standard", "sparse", "linear"))
    metrics = {p.stem: json.loads(p.read_text()) for p in (work / "metrics").glob("*.json")}
    assert sorted(metrics) == runs
    for m in metrics.values():
        for key in ("exact_match", "answer_acc", "token_acc", "params", "flops_per_sequence", "train_seconds",
                    "train_tokens_per_s", "steps", "device"):
            assert key in m, key
        assert 0 <= m["exact_match"] <= 1 and m["steps"] == 12 and m["device"] == "cpu"

    again = run(["dvc", "repro"], work)
    assert "Running stage" not in again

    shown = run(["dvc", "metrics", "show", "--json"], work)
    assert "exact_match" in shown and "answer_acc" in shown

    # W&B: offline by default, real run files with the logged metrics, and no secret anywhere
    files = sorted((work / "wandb").rglob("run-*.wandb"))
    assert len(files) == 13  # 6 training runs, 6 evaluations, 1 report
    logged = [summary_of(f) for f in files]
    assert {r["run"]["job_type"] for r in logged} == {"train", "evaluate", "report"}
    assert all(r["run"]["group"] == params["train"]["sweep"] for r in logged)
    assert any("test/exact_match" in r["summary"] for r in logged)
    for path in work.rglob("*"):
        if path.is_file() and ".git" not in path.parts:  # outputs, logs, configs, W&B files, DVC cache
            assert SECRET.encode() not in path.read_bytes(), path

    # one more width: only its six runs train, the others are reused
    before = {p.parent.name: p.stat().st_mtime_ns for p in (work / "runs").glob("*/train.json")}
    run(["git", "add", "-A"], work)
    run([*git, "commit", "-qm", "first sweep"], work)
    tiny_params(work, [16, 32])
    out = run(["dvc", "repro"], work)
    lines = [line for line in out.splitlines() if line.startswith("train: ")]
    assert len(lines) == 12 and sum("reused" in line for line in lines) == 6
    after = {p.parent.name: p.stat().st_mtime_ns for p in (work / "runs").glob("*/train.json")}
    assert len(after) == 12 and all(after[k] == v for k, v in before.items())

    # an experiment with one parameter changed, shown next to the workspace
    run(["git", "add", "-A"], work)
    run([*git, "commit", "-qm", "second sweep"], work)
    run(["dvc", "exp", "run", "-S", "evaluate.generation_samples=6"], work)
    table = run(["dvc", "exp", "show", "--json"], work)
    assert "exact_match" in table and "generation_samples" in table
