"""Bad input on a project that has run end to end: one line that names the problem and the file or
field, a non-zero exit, no traceback (unless --debug), and every existing output and the DVC cache
exactly as they were (hashed before and after)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RUN = "lis_n5-standard-w16-s0"
SKIP = shutil.ignore_patterns(".venv", "data", "runs", "results", "runtime", "metrics*", "wandb", "reports", "cache",
                              "tmp", "__pycache__", ".pytest_cache", ".hypothesis", "*.egg-info", ".whl", "dvc.lock")


def cli(work: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(work), "WANDB_MODE": "offline", "DVC_NO_ANALYTICS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)


def state(work: Path) -> dict[str, str]:
    """Every file of the project but the W&B folder, git's own and the parameters: path -> sha256."""
    return {str(p.relative_to(work)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(work.rglob("*")) if p.is_file() and not {"wandb", ".git", "__pycache__"} & set(p.parts)}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("bad") / "project"
    shutil.copytree(ROOT, work, ignore=SKIP)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["generate"].update(train_size=200, val_size=16, test_size=16)
    params["generate"]["tasks"] = {"lis": {"sizes": [5], "options": {"number_range": None}}}
    params["train"].update(datasets=["lis_n5"], attentions=["standard"], widths=[16], max_steps=6, val_every=3)
    params["evaluate"].update(generation_samples=8)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(work), "WANDB_MODE": "offline", "DVC_NO_ANALYTICS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    for cmd in (["git", "init", "-q"], ["dvc", "repro", "-q"]):
        subprocess.run(cmd, cwd=work, env=env, check=True, capture_output=True, timeout=600)
    return work


def params_change(change):
    def apply(work: Path) -> None:
        params = yaml.safe_load((work / "params.yaml").read_text())
        change(params)
        (work / "params.yaml").write_text(yaml.safe_dump(params))
    return apply


def write(rel: str, data: bytes):
    def apply(work: Path) -> None:
        (work / rel).write_bytes(data)
    return apply


def truncate(rel: str):
    def apply(work: Path) -> None:
        path = work / rel
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return apply


def meta_change(change):
    def apply(work: Path) -> None:
        path = work / "data" / "datasets" / "lis_n5" / "meta.json"
        meta = json.loads(path.read_text())
        change(meta)
        path.write_text(json.dumps(meta))
    return apply


def json_change(rel: str, change):
    """Rewrite the JSON file `rel` with `change` applied: well-formed JSON, wrong contents."""
    def apply(work: Path) -> None:
        data = json.loads((work / rel).read_text())
        change(data)
        (work / rel).write_text(json.dumps(data))
    return apply


def remove(rel: str):
    def apply(work: Path) -> None:
        path = work / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return apply


def make_folder(rel: str):
    def apply(work: Path) -> None:
        path = work / rel
        path.unlink()
        (path / "inside").mkdir(parents=True)
    return apply


def shuffled_array(work: Path) -> None:
    path = work / "data" / "datasets" / "lis_n5" / "val_tokens.npy"
    arr = np.load(path)
    np.save(path, arr[::-1].copy())


CKPT = f"runs/{RUN}/model.ckpt"
RESULT = f"results/{RUN}.json"
TOKENS = "data/datasets/lis_n5/train_tokens.npy"
CASES = {
    "huge width": (params_change(lambda p: p["train"].update(widths=[262144])), ["train"],
                   ["train.widths[0]: width 262144 needs about", "GiB"]),
    "garbage weights (evaluate)": (write(CKPT, b"not a checkpoint"), ["evaluate"],
                                   [CKPT, "does not match the checksum"]),
    "garbage weights (train)": (write(CKPT, b"not a checkpoint"), ["train"], [CKPT, "does not match the checksum"]),
    "truncated array (train)": (truncate(TOKENS), ["train"], [TOKENS, "does not match the sha256"]),
    "truncated array (evaluate)": (truncate(TOKENS), ["evaluate"], [TOKENS, "does not match the sha256"]),
    "changed array": (shuffled_array, ["train"], ["val_tokens.npy", "does not match the sha256"]),
    "wrong checksum in meta.json": (meta_change(lambda m: m["sha256"].update({"test_lengths.npy": "0" * 64})),
                                    ["train"], ["test_lengths.npy", "does not match the sha256"]),
    "deleted meta.json": (remove("data/datasets/lis_n5/meta.json"), ["train"],
                          ["data/datasets/lis_n5/meta.json: missing"]),
    "meta.json not JSON": (write("data/datasets/lis_n5/meta.json", b"{oops"), ["evaluate"],
                           ["meta.json: cannot be read"]),
    "deleted array": (remove("data/datasets/lis_n5/val_lengths.npy"), ["train"], ["val_lengths.npy: missing"]),
    "report.md is a folder": (make_folder("reports/report.md"), ["report"],
                              ["reports/report.md", "exists and is not a file"]),
    "results is a file": (lambda w: (shutil.rmtree(w / "results"), (w / "results").write_text("x")), ["report"],
                          ["no results in results"]),
    "damaged train.json": (write(f"runs/{RUN}/train.json", b"{"), ["evaluate"], [f"runs/{RUN}/train.json", "cannot"]),
    "damaged results file": (write(f"results/{RUN}.json", b"[1, 2"), ["report"], [f"results/{RUN}.json", "cannot"]),
    "unknown task option": (params_change(lambda p: p["generate"]["tasks"]["lis"].update(options={"colour": 1})),
                            ["generate"], ["generate.tasks.lis.sizes[0]", "task lis has no option 'colour'"]),
    "YAML syntax error": (write("params.yaml", b"train:\n  widths: [16\n  seeds: [0]\n"), ["train"],
                          ["params.yaml: not valid YAML at line", "column"]),
    "params file is a folder": (lambda w: None, ["report", "--params", "runs"], ["runs: cannot be read"]),
    "no report section": (params_change(lambda p: p.pop("report")), ["report"], ["no 'report' section"]),
    "threshold out of range": (params_change(lambda p: p["report"].update(thresholds=[1.5])), ["report"],
                               ["report.thresholds[0]", "(0.0, 1.0]"]),
    "evaluate batch size 0": (params_change(lambda p: p["evaluate"].update(batch_size=0)), ["evaluate"],
                              ["evaluate.batch_size", ">= 1"]),
    "missing sweep list": (remove("runs/sweep.json"), ["evaluate"], ["runs/sweep.json is missing"]),
    # well-formed JSON that is not what the pipeline wrote: the file and the field, nothing rewritten
    "results: accuracy a string": (json_change(RESULT, lambda r: r.update(graded_acc="0.9")), ["report"],
                                   [f"{RESULT}: graded_acc: input should be a valid number"]),
    "results: accuracy above 1": (json_change(RESULT, lambda r: r.update(exact_match=1.5)), ["report"],
                                  [f"{RESULT}: exact_match: input should be less than or equal to 1"]),
    "results: no width": (json_change(RESULT, lambda r: r.pop("width")), ["report"],
                          [f"{RESULT}: width: field required"]),
    "results: unknown status": (json_change(RESULT, lambda r: r.update(status="done")), ["report"],
                                [f"{RESULT}: status: input should be 'finished' or 'failed'"]),
    "results read back by evaluate": (json_change(RESULT, lambda r: r.update(graded_acc=[1])), ["evaluate"],
                                      [f"{RESULT}: graded_acc"]),
    "train.json: steps a string": (json_change(f"runs/{RUN}/train.json", lambda r: r.update(steps="6")), ["evaluate"],
                                   [f"runs/{RUN}/train.json: steps: input should be a valid integer"]),
    "train.json: bad checksum": (json_change(f"runs/{RUN}/train.json", lambda r: r.update(checkpoint_sha256="xyz")),
                                 ["train"], [f"runs/{RUN}/train.json: checkpoint_sha256"]),
    "train.json: run without width": (json_change(f"runs/{RUN}/train.json", lambda r: r["run"].pop("width")),
                                      ["evaluate"], [f"runs/{RUN}/train.json: run.width: field required"]),
    "runtime record: negative seconds": (json_change(f"runtime/train/{RUN}.json", lambda r: r.update(train_seconds=-1)),
                                         ["report"], [f"runtime/train/{RUN}.json: train_seconds"]),
    "runtime record: a list": (write(f"runtime/train/{RUN}.json", b"[1, 2]"), ["report"],
                               [f"runtime/train/{RUN}.json: not a JSON object"]),
    "meta.json: count a string": (meta_change(lambda m: m["splits"]["train"].update(count="200")), ["train"],
                                  ["meta.json: splits.train.count: input should be a valid integer"]),
    "meta.json: vocabulary not a list": (meta_change(lambda m: m.update(vocab="abc")), ["evaluate"],
                                         ["meta.json: vocab: input should be a valid list"]),
    "sweep.json: runs not a list": (json_change("runs/sweep.json", lambda s: s.update(runs="all")), ["evaluate"],
                                    ["runs/sweep.json: runs: input should be a valid list"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_changes_nothing(project, tmp_path, case):
    mutate, args, needles = CASES[case]
    work = tmp_path / "copy"
    shutil.copytree(project, work, symlinks=True)
    mutate(work)
    before = state(work)
    result = cli(work, *args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert state(work) == before, "an output or the DVC cache changed"
    assert not [p for p in work.rglob("*") if ".tmp" in p.name and ".git" not in p.parts]


def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "params.yaml").write_text("report: {thresholds: [2]}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "pipeline", "--debug", "report"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "Traceback" in result.stderr and "report.thresholds[0]" in result.stderr


@pytest.mark.parametrize("module", ["pipeline.__main__", "benchmarks.__main__"])
def test_every_cli_option_has_help(module):
    import importlib

    top = importlib.import_module(module).parser()
    actions = [a for a in top._actions if a.dest != "help"]
    for sub in top._subparsers._group_actions[0].choices.values():
        actions += [a for a in sub._actions if a.dest != "help"]
    for choice in top._subparsers._group_actions[0]._choices_actions:
        assert choice.help, choice.dest
    assert all(a.help for a in actions), [a.dest for a in actions if not a.help]


@pytest.mark.slow
@pytest.mark.parametrize("change", [
    lambda p: p["generate"]["tasks"].update(sudoku={"sizes": [3]}),  # an unknown task
    lambda p: p["generate"]["tasks"]["lis"].update(sizes=[1]),  # a size out of range
])
def test_a_bad_generate_parameter_under_dvc_repro_keeps_the_datasets(project, tmp_path, change):
    """DVC removes a stage's outputs before it runs it; the datasets are persistent outputs, so a
    rejected parameter leaves them as they were."""
    work = tmp_path / "copy"
    shutil.copytree(project, work, symlinks=True)
    params_change(change)(work)
    datasets = {k: v for k, v in state(work).items() if k.startswith("data/")}
    env = {**os.environ, "PYTHONPATH": str(work), "WANDB_MODE": "offline", "DVC_NO_ANALYTICS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(["dvc", "repro"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "generate.tasks" in result.stdout + result.stderr
    assert datasets and {k: v for k, v in state(work).items() if k.startswith("data/")} == datasets
