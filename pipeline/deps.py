"""What a piece of code depends on, read from the import statements: the one source of truth behind
dvc.yaml's `deps` (a test compares them) and the code part of the run and evaluation keys.

Hand-written because no library answers the question asked here: which of *our* modules can a
module run, counting imports inside functions (the stages import torch and Lightning lazily) and
the package `__init__` files that every import executes.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = "pipeline"
ROOT = Path(__file__).resolve().parent  # the package folder


def module_file(name: str) -> Path | None:
    """The source file of module `pipeline.x.y`, or None if there is none."""
    parts = name.split(".")[1:]
    base = ROOT.joinpath(*parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [PACKAGE, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> set[str]:
    """Every `pipeline.*` module that `path` names in an import statement, anywhere in the file."""
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = (package[: len(package) - node.level + 1] if node.level else [])
            origin = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(origin)
            # `from . import x` and `from .pkg import mod` may name submodules
            found.update(f"{origin}.{alias.name}" for alias in node.names)
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")}


@cache
def closure(module: str) -> tuple[str, ...]:
    """Files (relative to the repository, sorted) that importing `module` can execute: the module,
    every package module it imports transitively, and the `__init__.py` of each package on the way."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__, then c
            path = module_file(".".join(parts[:i]))
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(_imported(path))
    return tuple(sorted(str(p.relative_to(ROOT.parent)) for p in seen))


def code_hash(module: str) -> str:
    """A hash of the code `module` can run, by syntax tree: comments, docstrings and formatting do
    not change it, so editing them retrains and re-evaluates nothing."""
    digest = hashlib.sha256()
    for rel in closure(module):
        tree = ast.parse((ROOT.parent / rel).read_text())
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
                body[0] = ast.Pass()  # drop the docstring
        digest.update(rel.encode() + b"\0" + ast.dump(tree).encode() + b"\0")
    return digest.hexdigest()[:16]
