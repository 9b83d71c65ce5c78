"""The command line: the export interface, and bad input failing in one line before any output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from settings import generate_section

from pipeline.tasks import make_task
from pipeline.tasks.cot_text import read_cot

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("task", ["arithmetic", "ed", "ed_local", "lis"])
def test_export_writes_the_cot_benchmark_format(tmp_path, task):
    n = {"arithmetic": 4, "ed": 6, "ed_local": 8, "lis": 12}[task]
    out = tmp_path / "out"
    args = ["export", "--task", task, "--n", str(n), "--train-size", "120", "--test-size", "30", "--seed", "5"]
    result = cli(*args, "--out", str(out))
    assert result.returncode == 0, result.stderr
    expected = {"chain/train_data.txt", "chain/test_data.txt", "decoder/train_data.txt", "decoder/test_data.txt"}
    if task == "arithmetic":
        expected.add("chain/test_ans.txt")
    assert {str(p.relative_to(out)) for p in out.rglob("*.txt")} == expected
    files = read_cot(out)
    assert len(files["chain/train_data.txt"]) == 120 and len(files["chain/test_data.txt"]) == 30
    t = make_task(task, n)
    for tokens in files["chain/train_data.txt"]:
        t.check(tokens)
    line = (out / "chain/train_data.txt").read_text().splitlines()[0]
    assert line.endswith(" ") and "  " not in line  # the public code's spacing
    # deterministic in its arguments
    again = cli(*args, "--out", str(tmp_path / "again"))
    assert again.returncode == 0
    for name in expected:
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    assert cli(*args[:-1], "6", "--out", str(tmp_path / "other")).returncode == 0
    assert (out / "chain/train_data.txt").read_bytes() != (tmp_path / "other/chain/train_data.txt").read_bytes()


def export_args(task: str = "ed", n: str = "6", train: str = "10", test: str = "10", *extra: str) -> list[str]:
    return ["export", "--task", task, "--n", n, "--train-size", train, "--test-size", test, *extra]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (export_args(task="sudoku"), ["unknown task", "sudoku"]),
        (export_args(n="2"), ["n=2", "out of range"]),
        (export_args(task="lis", n="3000"), ["n=3000"]),
        (export_args(train="0"), ["--train-size"]),
        (export_args(test="-5"), ["--test-size"]),
        (export_args("arithmetic", "1", "600"), ["473"]),
        (export_args("ed", "6", "10", "10", "--option", "band=2"), ["band"]),
    ],
)
def test_export_bad_input(tmp_path, args, needles):
    one_line_error(cli(*args, "--out", str(tmp_path / "out")), *needles)
    assert not (tmp_path / "out").exists()


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = cli("export", "--task", "ed", "--n", "6", "--train-size", "5", "--test-size", "5",
                 "--out", str(blocker / "sub"))
    one_line_error(result, "not writable")
    assert blocker.read_text() == "not a folder"
    result = cli("generate", "--params", str(write_params(tmp_path, lambda g: None)), "--out", str(blocker))
    one_line_error(result, "not a folder")


def write_params(tmp_path: Path, change) -> Path:
    """A parameters file of a small valid generate section (LIS n=5) after `change`."""
    generate = generate_section()
    change(generate)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"generate": generate}))
    return path


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (lambda g: g["tasks"].update(chess={"sizes": [4]}), ["generate.tasks.chess", "unknown task"]),
        (lambda g: g["tasks"]["lis"].update(sizes=[6, 2]), ["generate.tasks.lis.sizes[1]", "n=2"]),
        (lambda g: g["tasks"]["lis"].update(sizes=[6000]), ["generate.tasks.lis.sizes[0]"]),
        (lambda g: g.update(train_size=0), ["generate.train_size", ">= 1"]),
        (lambda g: g.update(val_size=-1), ["generate.val_size"]),
        (lambda g: g.update(test_size="many"), ["generate.test_size", "integer"]),
        (lambda g: g.update(seed=1.5), ["generate.seed"]),
        (lambda g: g.pop("seed"), ["generate.seed", "missing"]),
        (lambda g: g.update(train_size=20000, tasks={"arithmetic": {"sizes": [1, 3]}}),  # n=1: 473 distinct
         ["generate.tasks.arithmetic.sizes[0]", "473"]),
        (lambda g: g["tasks"].update(ed={"sizes": [4], "options": {"using": 99}}),
         ["generate.tasks.ed.sizes[0]", "using"]),
        (lambda g: g["tasks"]["lis"].update(sizes=[]), ["generate.tasks.lis.sizes"]),
    ],
)
def test_generate_bad_params(tmp_path, change, needles):
    params = write_params(tmp_path, change)
    out = tmp_path / "data"
    one_line_error(cli("generate", "--params", str(params), "--out", str(out)), *needles)
    assert not out.exists()


def test_generate_missing_or_broken_params_file(tmp_path):
    one_line_error(cli("generate", "--params", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "d")),
                   "no such parameters file")
    bad = tmp_path / "bad.yaml"
    bad.write_text("generate: [unclosed\n")
    one_line_error(cli("generate", "--params", str(bad), "--out", str(tmp_path / "d")), "not valid YAML")
    assert not (tmp_path / "d").exists()
    # a profile is not a whole parameters file: say so and name the option (not 'generate.seed: missing')
    one_line_error(cli("grid-status", "--params", str(ROOT / "conf" / "profile" / "paper.yaml")),
                   "paper.yaml: a profile", "--profile paper")
