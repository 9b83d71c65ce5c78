"""End to end: a real `dvc repro` in a temporary git clone of the project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DVC = [sys.executable, "-m", "dvc"]


def run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(cwd), "DVC_NO_ANALYTICS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `python` = this venv
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.mark.slow
def test_dvc_repro_generates_every_dataset_and_is_idempotent(tmp_path):
    work = tmp_path / "project"
    shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(".venv", "data", ".dvc/cache", ".dvc/tmp",
                                                             "__pycache__", ".pytest_cache", ".hypothesis",
                                                             "*.egg-info", ".whl"))
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["generate"].update(train_size=300, val_size=30, test_size=30)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    run(["git", "init", "-q"], work)
    run(["git", "add", "-A"], work)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "snapshot"], work)

    out = run([*DVC, "repro"], work)
    assert "Running stage 'generate'" in out
    names = sorted(p.name for p in (work / "data/datasets").iterdir())
    expected = sorted(f"{task}_n{n}" for task, spec in params["generate"]["tasks"].items() for n in spec["sizes"])
    assert names == expected
    for name in names:
        meta = json.loads((work / "data/datasets" / name / "meta.json").read_text())
        assert {s: v["count"] for s, v in meta["splits"].items()} == {"train": 300, "val": 30, "test": 30}
    assert (work / "dvc.lock").exists()

    again = run([*DVC, "repro"], work)
    assert "Running stage" not in again and "didn't change" in again

    status = run([*DVC, "status"], work)
    assert "up to date" in status
