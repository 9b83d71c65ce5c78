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


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The source file of module `pipeline.x.y` under package folder `root`, or None if there is none."""
    parts = name.split(".")[1:]
    base = root.joinpath(*parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [PACKAGE, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _origin(node: ast.ImportFrom, path: Path, root: Path) -> str:
    """The absolute module name that `from ... import` reads from, in the file `path`."""
    here = _module_name(path, root).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    base = (package[: len(package) - node.level + 1] if node.level else [])
    return ".".join([*base, *(node.module.split(".") if node.module else [])])


def _ours(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def _imported(path: Path, root: Path) -> set[str]:
    """Every `pipeline.*` module that `path` names in an import statement, anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            origin = _origin(node, path, root)
            found.add(origin)
            # `from . import x` and `from .pkg import mod` may name submodules
            found.update(f"{origin}.{alias.name}" for alias in node.names)
    return {m for m in found if _ours(m)}


@cache
def closure(module: str, root: Path = ROOT) -> tuple[str, ...]:
    """Files (relative to the repository, sorted) that importing `module` can execute: the module,
    every package module it imports transitively, and the `__init__.py` of each package on the way."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__, then c
            path = module_file(".".join(parts[:i]), root)
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(_imported(path, root))
    return tuple(sorted(str(p.relative_to(root.parent)) for p in seen))


def _normalised(path: Path, root: Path) -> str:
    """The syntax tree of `path` without what cannot change what it computes: docstrings, comments and
    formatting, and where in the package the modules it imports live (`from .grading import x` and
    `from .scoring.grading import x` read the same; the imported module's own code is hashed itself).
    Empty for a module that runs nothing (an empty or docstring-only `__init__.py`)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            body[0] = ast.Pass()  # drop the docstring
        if isinstance(node, ast.ImportFrom) and _ours(_origin(node, path, root)):
            node.module, node.level = PACKAGE, 0
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _ours(alias.name):
                    alias.name = PACKAGE
    if all(isinstance(n, ast.Pass) or (isinstance(n, ast.ImportFrom) and n.names[0].name == "annotations")
           for n in tree.body):
        return ""
    return dump(tree)


# Fields that syntax tree nodes have from Python 3.12 on (PEP 695), written empty where this Python
# lacks them.
_SINCE_312 = {"FunctionDef": ("type_params",), "AsyncFunctionDef": ("type_params",), "ClassDef": ("type_params",)}
_UNSET = object()


def dump(node: object) -> str:
    """`ast.dump(node)` as Python 3.12 writes it, on any Python from 3.11: `ast.dump` itself differs
    by version (3.11 lacks `type_params`, 3.13 leaves out empty fields), and so would every run key,
    retraining on one Python what another trained. 3.12 is the GPU machines' Python, whose keys the
    runs trained there carry."""
    if isinstance(node, ast.AST):
        cls, args = type(node), []
        added = _SINCE_312.get(cls.__name__, ())
        for name in [*cls._fields, *(f for f in added if f not in cls._fields)]:
            value = getattr(node, name, [] if name in added else _UNSET)
            if value is _UNSET or (value is None and getattr(cls, name, ...) is None):
                continue  # as 3.12: an unset field, or an optional one left at None, is not written
            args.append(f"{name}={dump(value)}")
        return f"{cls.__name__}({', '.join(args)})"
    if isinstance(node, list):
        return f"[{', '.join(map(dump, node))}]"
    return repr(node)


def code_hash(module: str, root: Path = ROOT) -> str:
    """A hash of the code `module` can run, by syntax tree and by content alone: comments,
    docstrings, formatting and the files' names and places do not change it, so editing the first or
    moving a module retrains and re-evaluates nothing, while any change to what the code computes
    does."""
    trees = sorted(filter(None, (_normalised(root.parent / rel, root) for rel in closure(module, root))))
    return hashlib.sha256("\0".join(trees).encode()).hexdigest()[:16]
