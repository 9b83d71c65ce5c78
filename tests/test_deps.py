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
    # dvc.yaml runs `python -m pipeline.stages.<stage>`: __main__.py is no stage's code
    expected = set(closure(f"pipeline.stages.{stage}"))
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


def test_code_hash_ignores_comments_and_docstrings_but_not_code(tmp_path):
    package = tmp_path / "pipeline"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text('"""doc"""\nfrom . import b\nX = 1\n')
    (package / "b.py").write_text("Y = 2  # note\n")
    first = code_hash("pipeline.a", package)
    (package / "a.py").write_text('"""other doc"""\n# a comment\nfrom . import b\n\nX = 1\n')
    (package / "b.py").write_text("Y = 2\n")
    closure.cache_clear()
    assert code_hash("pipeline.a", package) == first
    (package / "b.py").write_text("Y = 3\n")
    closure.cache_clear()
    assert code_hash("pipeline.a", package) != first
    closure.cache_clear()


def moved_copy(tmp_path: Path) -> Path:
    """A copy of the package in which grading.py (part of what trains a run) moved into a new
    subpackage, and its importers import it from there."""
    import shutil

    package = tmp_path / "pipeline"
    shutil.copytree(ROOT / "pipeline", package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "scoring").mkdir()
    (package / "scoring" / "__init__.py").write_text('"""Grading, moved."""\n')
    (package / "grading.py").rename(package / "scoring" / "grading.py")
    for path in package.rglob("*.py"):
        text = path.read_text()
        if "from .grading import" in text:
            path.write_text(text.replace("from .grading import", "from .scoring.grading import"))
    assert "pipeline/scoring/grading.py" in closure("pipeline.training", package)
    return package


def test_moving_training_code_keeps_the_run_and_evaluation_keys(tmp_path):
    package = moved_copy(tmp_path)
    for module in ("pipeline.training", "pipeline.evaluation"):
        assert code_hash(module, package) == code_hash(module)
    closure.cache_clear()


def test_changing_what_training_computes_changes_the_key(tmp_path):
    package = moved_copy(tmp_path)
    grading = package / "scoring" / "grading.py"
    text = grading.read_text()
    assert "IGNORE = -100" in text
    grading.write_text(text.replace("IGNORE = -100", "IGNORE = -1"))
    closure.cache_clear()
    assert code_hash("pipeline.training", package) != code_hash("pipeline.training")
    closure.cache_clear()


def test_no_stage_depends_on_the_benchmarks_or_the_command_line():
    """Editing a benchmark, or the commands of `python -m pipeline`, leaves every stage up to date."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage, spec in stages.items():
        assert not any(dep.startswith("benchmarks") for dep in spec["deps"]), stage
        assert "pipeline/__main__.py" not in closure(f"pipeline.stages.{stage}"), stage
    import ast

    for path in (ROOT / "pipeline").rglob("*.py"):  # no import of the benchmarks package anywhere
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "benchmarks" for n in names), path


SOURCE_312 = '''class A:
    def f(self, x: int = 1, *a, k=None, **kw) -> None:
        return None if x else f"{x!r:>4}"
'''
# ast.dump(ast.parse(SOURCE_312)) on Python 3.12, the GPU machines' Python
DUMP_312 = (
    "Module(body=[ClassDef(name='A', bases=[], keywords=[], body=[FunctionDef(name='f', args=arguments("
    "posonlyargs=[], args=[arg(arg='self'), arg(arg='x', annotation=Name(id='int', ctx=Load()))], "
    "vararg=arg(arg='a'), kwonlyargs=[arg(arg='k')], kw_defaults=[Constant(value=None)], kwarg=arg(arg='kw'), "
    "defaults=[Constant(value=1)]), body=[Return(value=IfExp(test=Name(id='x', ctx=Load()), "
    "body=Constant(value=None), orelse=JoinedStr(values=[FormattedValue(value=Name(id='x', ctx=Load()), "
    "conversion=114, format_spec=JoinedStr(values=[Constant(value='>4')]))])))], decorator_list=[], "
    "returns=Constant(value=None), type_params=[])], decorator_list=[], type_params=[])], type_ignores=[])"
)


def test_the_code_key_is_the_same_on_every_python():
    """`ast.dump` differs by Python version; the key's dump is 3.12's on all of them, so that a run
    trained on a GPU machine's 3.12 is not trained again on 3.11 or 3.13."""
    import ast
    import sys

    from pipeline.deps import dump

    tree = ast.parse(SOURCE_312)
    assert dump(tree) == DUMP_312
    if sys.version_info[:2] == (3, 12):
        assert ast.dump(tree) == DUMP_312
