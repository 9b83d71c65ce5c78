"""dvc.yaml declares, for each stage, exactly the package modules its entry point can import; the
run and evaluation keys cover exactly the code that decides a result."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.deps import closure, code_hash

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("generate", "train", "evaluate", "report")


def declared_code(stage: str) -> set[str]:
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]
    files = set()
    for dep in deps:
        path = ROOT / dep
        if dep.startswith("pipeline"):
            files |= ({str(p.relative_to(ROOT)) for p in path.glob("*.py")} if path.is_dir() else {dep})
    return files


@pytest.mark.parametrize("stage", STAGES)
def test_dvc_yaml_declares_exactly_the_import_closure(stage):
    # `python -m pipeline <stage>` runs __main__.py, which imports the stage module
    expected = set(closure(f"pipeline.stages.{stage}")) | {"pipeline/__main__.py"}
    assert declared_code(stage) == expected


def test_training_does_not_depend_on_evaluation_cost_report_or_task_code():
    trained = set(closure("pipeline.training"))
    for module in ("evaluation.py", "cost.py", "params.py", "generation.py", "stages/train.py"):
        assert f"pipeline/{module}" not in trained
    assert not any(p.startswith(("pipeline/report/", "pipeline/tasks/")) for p in trained)
    assert {"pipeline/model.py", "pipeline/grading.py", "pipeline/data.py"} <= trained
    assert "pipeline/training.py" in set(closure("pipeline.evaluation"))


def test_report_stage_needs_neither_torch_code_nor_the_model():
    needed = set(closure("pipeline.stages.report"))
    assert not any(p.startswith("pipeline/attention/") for p in needed)
    assert not {"pipeline/model.py", "pipeline/training.py", "pipeline/cost.py"} & needed


def test_code_hash_ignores_comments_and_docstrings_but_not_code(tmp_path, monkeypatch):
    import pipeline.deps as deps

    package = tmp_path / "pipeline"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text('"""doc"""\nfrom . import b\nX = 1\n')
    (package / "b.py").write_text("Y = 2  # note\n")
    monkeypatch.setattr(deps, "ROOT", package)
    deps.closure.cache_clear()
    try:
        first = code_hash("pipeline.a")
        (package / "a.py").write_text('"""other doc"""\n# a comment\nfrom . import b\n\nX = 1\n')
        (package / "b.py").write_text("Y = 2\n")
        deps.closure.cache_clear()
        assert code_hash("pipeline.a") == first
        (package / "b.py").write_text("Y = 3\n")
        deps.closure.cache_clear()
        assert code_hash("pipeline.a") != first
    finally:
        deps.closure.cache_clear()
