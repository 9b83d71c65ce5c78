"""End to end: a real `dvc repro` of the whole pipeline in a temporary git repository of the project,
and what re-runs after each kind of change: exactly what is stale, nothing else."""

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
GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
SKIP = shutil.ignore_patterns(".venv", "data", "runs", "results", "runtime", "metrics*", "wandb", "reports", "cache",
                              "tmp", "__pycache__", ".pytest_cache", ".hypothesis", "*.egg-info", ".whl", "dvc.lock")
ATTENTIONS = ["standard", "sparse", "linear"]
RUNS = sorted(f"{d}-{a}-w16-s0" for d in ("ed_n4", "lis_n6") for a in ATTENTIONS)


def run(cmd: list[str], cwd: Path, wandb: bool = True) -> str:
    """`wandb=False`: W&B off (WANDB_MODE=disabled), for the tests that do not read its files (a W&B
    run starts a service process: about 2 s a stage here)."""
    env = {**os.environ, "PYTHONPATH": str(cwd), "DVC_NO_ANALYTICS": "1", "WANDB_API_KEY": SECRET}
    env.pop("WANDB_MODE", None)  # the default must be offline on its own
    if not wandb:
        env["WANDB_MODE"] = "disabled"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `python` and `dvc` = this venv
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def tiny_params(work: Path, widths: list[int]) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["generate"].update(train_size=300, val_size=24, test_size=24)
    params["generate"]["tasks"] = {"ed": {"sizes": [4], "options": {"using": 8}},
                                   "lis": {"sizes": [6], "options": {"number_range": None}}}
    # one process a stage: two spawned workers take longer to start than these runs take to train (the
    # pool itself is tested in test_training and test_interruption)
    params["train"].update(datasets=["ed_n4", "lis_n6"], attentions=ATTENTIONS, widths=widths, max_steps=12,
                           val_every=6, val_generation=8, concurrency=1)
    params["evaluate"].update(generation_samples=12, concurrency=1)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    return params


def commit(work: Path, message: str) -> None:
    run(["git", "add", "-A"], work)
    run([*GIT, "commit", "-qm", message], work)


def lines(out: str, prefix: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(prefix)]


def trained(out: str) -> int:
    return sum("reused" not in line for line in lines(out, "train ["))


def evaluated(out: str) -> int:
    return sum(": evaluated," in line for line in lines(out, "evaluate ["))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def stamps(work: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in (work / "runs").glob("*/model.ckpt")}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("dvc") / "project"
    shutil.copytree(ROOT, work, ignore=SKIP)
    tiny_params(work, [16])
    run(["git", "init", "-q"], work)
    commit(work, "snapshot")
    return work


@pytest.mark.slow
def test_dvc_repro_runs_the_whole_pipeline_then_nothing(project):
    work = project
    out = run(["dvc", "repro"], work)
    for stage in ("generate", "train", "evaluate", "report"):
        assert f"Running stage '{stage}'" in out
    assert "GPU available" not in out and "Tip" not in out and "Warning" not in out, out
    assert len(lines(out, "train [")) == 6 and lines(out, "train [")[0].startswith("train [1/6] ")
    report = (work / "reports" / "report.md").read_text()
    assert "runs: 6" in report and "figures/figure1.png" in report and "figures/figure3.png" in report
    assert {p.name for p in (work / "reports" / "figures").iterdir()} >= {"figure1.png", "figure3.png", "compute.png"}
    assert sorted(p.name for p in (work / "runs").iterdir() if p.is_dir()) == RUNS
    results = {p.stem: json.loads(p.read_text()) for p in (work / "results").glob("*.json")}
    assert sorted(results) == RUNS
    for m in results.values():
        for key in ("exact_match", "answer_acc", "token_acc", "params", "flops_per_sequence", "steps", "status"):
            assert key in m, key
        assert 0 <= m["exact_match"] <= 1 and m["steps"] == 12 and "train_seconds" not in m
    for rel in RUNS:
        timing = json.loads((work / "runtime" / "train" / f"{rel}.json").read_text())
        assert timing["train_seconds"] > 0 and timing["device"] == "cpu"

    assert "Running stage" not in run(["dvc", "repro"], work)
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], work))
    numbers = shown[""]["data"]["metrics.json"]["data"]
    assert numbers["runs_total"] == 6 and numbers["runs_failed"] == 0
    assert set(numbers["graded_acc"]) == set(ATTENTIONS)

    # W&B: offline by default, real run files with the logged metrics, and no secret anywhere
    files = sorted((work / "wandb").rglob("run-*.wandb"))
    assert len(files) == 13  # 6 training runs, 6 evaluations, 1 report
    logged = [summary_of(f) for f in files]
    assert {r["run"]["job_type"] for r in logged} == {"train", "evaluate", "report"}
    assert any("test/exact_match" in r["summary"] for r in logged)
    for path in work.rglob("*"):
        if path.is_file() and ".git" not in path.parts:  # outputs, logs, configs, W&B files, DVC cache
            assert SECRET.encode() not in path.read_bytes(), path
    # no absolute path in any output
    outputs = [work / "metrics.json", work / "dvc.lock", *(work / "runs").rglob("*"), *(work / "results").rglob("*"),
               *(work / "runtime").rglob("*"), *(work / "reports").rglob("*")]
    for path in outputs:
        if path.is_file():
            assert str(work).encode() not in path.read_bytes() and b"/tmp/" not in path.read_bytes(), path
    # `dvc plots show` draws the figures as images: a page that needs no network, its folder ignored by git
    run(["dvc", "plots", "show"], work)
    page = (work / "dvc_plots" / "index.html").read_text()
    assert page.count("<img") >= 3 and "http" not in page and "<script src" not in page
    assert "dvc_plots" not in run(["git", "status", "--porcelain"], work)
    commit(work, "first sweep")


@pytest.mark.slow
def test_only_what_a_change_touches_runs_again(project):
    work = project
    before = stamps(work)

    # a comment in training code: DVC re-runs the stage, which reuses every run (syntax-tree key)
    edit(work / "pipeline" / "training.py", "# a finished run's weights", "# the finished run's weights")
    out = run(["dvc", "repro"], work, wandb=False)
    assert "Running stage 'train'" in out and trained(out) == 0 and evaluated(out) == 0

    # the cost model: FLOPs refresh in every results file and the report; nothing trains or evaluates
    flops = {p.stem: json.loads(p.read_text())["flops_per_sequence"] for p in (work / "results").glob("*.json")}
    edit(work / "pipeline" / "cost.py", '"head": length * 2 * width * vocab', '"head": length * 4 * width * vocab')
    out = run(["dvc", "repro"], work, wandb=False)
    assert "Running stage 'train'" not in out and trained(out) == 0 and evaluated(out) == 0
    assert "Running stage 'evaluate'" in out and "Running stage 'report'" in out
    new = {p.stem: json.loads(p.read_text())["flops_per_sequence"] for p in (work / "results").glob("*.json")}
    assert all(new[k] > flops[k] for k in flops)
    assert stamps(work) == before

    # evaluation-only code: every run is evaluated again, none retrains
    edit(work / "pipeline" / "evaluation.py", "self.test_generation: int | None = None",
         "self.test_generation: int | None = None\n        self.edited = True")
    out = run(["dvc", "repro"], work, wandb=False)
    assert "Running stage 'train'" not in out and evaluated(out) == 6
    assert stamps(work) == before

    # the model: every run retrains
    edit(work / "pipeline" / "model.py", "class ModelError(ValueError):",
         "EDITED = 1\n\n\nclass ModelError(ValueError):")
    out = run(["dvc", "repro"], work, wandb=False)
    assert trained(out) == 6 and evaluated(out) == 6
    assert "Running stage" not in run(["dvc", "repro"], work, wandb=False)
    commit(work, "edited code")


@pytest.mark.slow
def test_shrinking_and_growing_the_sweep_back_trains_nothing(project):
    work = project
    tiny_params(work, [16, 32])
    out = run(["dvc", "repro"], work, wandb=False)
    assert trained(out) == 6 and len(lines(out, "train [")) == 12
    commit(work, "two widths")
    kept = stamps(work)
    out = run(["dvc", "exp", "run", "-S", "train.widths=[16]"], work, wandb=False)
    assert trained(out) == 0 and len(list((work / "results").glob("*.json"))) == 6
    assert len(stamps(work)) == 12  # the w32 runs stay in runs/
    out = run(["dvc", "exp", "run", "-S", "train.widths=[16,32]"], work, wandb=False)
    assert trained(out) == 0 and evaluated(out) == 6  # only their evaluation is redone
    assert stamps(work) == kept and len(list((work / "results").glob("*.json"))) == 12
    table = run(["dvc", "exp", "show", "--json"], work, wandb=False)
    assert "graded_acc" in table and "widths" in table


@pytest.mark.slow
def test_a_fresh_clone_that_reruns_ends_with_the_same_outputs(project, tmp_path):
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    run(["dvc", "repro"], clone, wandb=False)
    changed = run(["git", "status", "--porcelain", "--untracked-files=all"], clone).split("\n")
    changed = sorted(line[3:] for line in changed if line.strip())
    assert changed and all(p.startswith(("runtime/", "reports/runtime/")) or p == "dvc.lock" for p in changed), changed

    def without_runtime(lock: dict) -> dict:  # the md5 of run-dependent outputs is run-dependent too
        for stage in lock["stages"].values():
            for kind in ("deps", "outs"):
                stage[kind] = [o for o in stage.get(kind, []) if "runtime" not in o["path"]]
        return lock

    revs = {json.loads(p.read_text())["git_rev"] for p in (clone / "runtime" / "train").glob("*.json")}
    assert len(revs) == 1 and not revs.pop().endswith("+dirty")  # outputs being rewritten are not code

    ours = yaml.safe_load((project / "dvc.lock").read_text())
    theirs = yaml.safe_load((clone / "dvc.lock").read_text())
    assert without_runtime(theirs) == without_runtime(ours)
