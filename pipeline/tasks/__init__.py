"""The DP tasks behind one interface, and the registry that names them.

Adding a task is one new module with a `Task` subclass and one entry in `TASKS`.
"""

from __future__ import annotations

import inspect

from .arithmetic import Arithmetic
from .base import Batch, ChainError, Task, TaskError, Vocab
from .edit_distance import EditDistance, EditDistanceLocal
from .lis import LIS

TASKS: dict[str, type[Task]] = {
    "arithmetic": Arithmetic,
    "ed": EditDistance,
    "ed_local": EditDistanceLocal,
    "lis": LIS,
}


def make_task(name: str, n: int, **options) -> Task:
    """The task `name` at size n; a TaskError names what is wrong."""
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r} (known: {', '.join(sorted(TASKS))})")
    known = [p for p in inspect.signature(TASKS[name].__init__).parameters if p not in ("self", "n")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TaskError(f"task {name} has no option {unknown[0]!r} (its options: {', '.join(known) or 'none'})")
    return TASKS[name](n, **options)


__all__ = ["TASKS", "Batch", "ChainError", "Task", "TaskError", "Vocab", "make_task"]
