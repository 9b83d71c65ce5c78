"""Typed, validated parameters: one section per stage, every bad value caught with its path.

Hand-written on purpose: the sections are small, and a one-line message that names the field
(`params.yaml: generate.tasks.lis.sizes[1]: ...`) matters more here than what a schema library adds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .tasks import TASKS, Task, TaskError, make_task


class ParamError(ValueError):
    """A parameter is missing or has a bad type or value; the message names it."""


def load_yaml(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ParamError(f"{path}: no such parameters file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParamError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ParamError(f"{path}: expected a mapping of stage sections")
    return data


def _int(value, where: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParamError(f"{where}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ParamError(f"{where}: must be >= {minimum}, got {value}")
    return value


def _mapping(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise ParamError(f"{where}: expected a mapping, got {value!r}")
    return value


def _only(section: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise ParamError(f"{where}: unknown key {unknown[0]!r} (expected one of {', '.join(sorted(allowed))})")


@dataclass(frozen=True)
class Dataset:
    task: Task

    @property
    def name(self) -> str:
        return f"{self.task.name}_n{self.task.n}"


@dataclass(frozen=True)
class GenerateParams:
    seed: int
    sizes: dict[str, int]  # samples per split
    datasets: list[Dataset] = field(default_factory=list)

    @classmethod
    def parse(cls, section, where: str = "generate") -> GenerateParams:
        section = _mapping(section, where)
        _only(section, {"seed", "train_size", "val_size", "test_size", "tasks"}, where)
        for key in ("seed", "train_size", "val_size", "test_size", "tasks"):
            if key not in section:
                raise ParamError(f"{where}.{key}: missing")
        seed = _int(section["seed"], f"{where}.seed", 0)
        sizes = {
            "train": _int(section["train_size"], f"{where}.train_size", 1),
            "val": _int(section["val_size"], f"{where}.val_size", 1),
            "test": _int(section["test_size"], f"{where}.test_size", 1),
        }
        datasets = []
        tasks = _mapping(section["tasks"], f"{where}.tasks")
        for name, spec in tasks.items():
            at = f"{where}.tasks.{name}"
            if name not in TASKS:
                raise ParamError(f"{at}: unknown task {name!r} (known: {', '.join(sorted(TASKS))})")
            spec = _mapping(spec, at)
            _only(spec, {"sizes", "options"}, at)
            options = _mapping(spec.get("options") or {}, f"{at}.options")
            task_sizes = spec.get("sizes")
            if not isinstance(task_sizes, list) or not task_sizes:
                raise ParamError(f"{at}.sizes: expected a non-empty list of problem sizes, got {task_sizes!r}")
            if len(set(map(repr, task_sizes))) != len(task_sizes):
                raise ParamError(f"{at}.sizes: repeated size in {task_sizes}")
            for i, n in enumerate(task_sizes):
                try:
                    task = make_task(name, n, **options)
                    total = sum(sizes.values())
                    if total > task.min_distinct():
                        raise TaskError(f"{total} distinct samples asked for (train + val + test), but "
                                        f"{name} at n={n} is only known to have {task.min_distinct()}")
                except TaskError as err:
                    raise ParamError(f"{at}.sizes[{i}]: {err}") from None
                datasets.append(Dataset(task))
        return cls(seed, sizes, datasets)


def load_section(path: Path, name: str):
    data = load_yaml(path)
    if name not in data:
        raise ParamError(f"{path}: no '{name}' section")
    parsers = {"generate": GenerateParams.parse}
    try:
        return parsers[name](data[name], name)
    except ParamError as err:
        raise ParamError(f"{path}: {err}") from None
