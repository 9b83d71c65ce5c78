"""What each file the pipeline writes and later reads back must hold, checked on every read: a file
that is not what the pipeline wrote (not JSON, a missing field, a wrong type, a value out of range)
is one error that names the file and the field, and nothing is computed from it.

pydantic does the checking (types, ranges, nested fields, one message per problem); the models
allow fields beyond those listed, so that a newer writer's extra field is no error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
Seconds = Annotated[float, Field(ge=0.0)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class CorruptFile(ValueError):
    """A file the pipeline wrote is damaged; the message names the file and the field."""


class Record(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class RunSpec(Record):
    dataset: str
    attention: str
    width: Positive
    seed: Count


class CurvePoint(Record):
    step: Count
    sequences: Count
    acc: Fraction | None = None
    loss: float | None = None


class TrainRecord(Record):
    """runs/<run>/train.json: a finished training."""
    key: str
    run: RunSpec
    task: str
    n: Count
    max_len: Positive
    status: Literal["finished", "diverged"]
    reason: str | None
    steps: Count
    best_step: Count | None
    best_val_acc: Fraction | None
    stopped_early: bool
    checkpoint_sha256: Sha256
    curve: list[CurvePoint] | None = None  # validations against sequences seen (absent in older runs)


class Resume(Record):
    """runs/<run>/resume.json: an unfinished training's key, W&B id and time so far."""
    key: str
    wandb_id: str
    segments: list[Seconds]
    peak_gpu_gib: Seconds | None = None


class Sweep(Record):
    """runs/sweep.json: the runs of the current sweep."""
    sweep: str
    runs: list[str]


class Results(Record):
    """results/<run>.json: what a run achieved and costs."""
    evaluation_key: str
    run: str
    task: str
    n: Count
    attention: str
    width: Positive
    seed: Count
    seq_len: Positive
    status: Literal["finished", "failed"]
    reason: str | None
    steps: Count
    best_step: Count | None
    best_val_acc: Fraction | None
    stopped_early: bool
    exact_match: Fraction | None
    answer_acc: Fraction | None
    token_acc: Fraction | None
    graded_acc: Fraction | None
    answer_samples: Count | None
    exact_by_length: dict[str, list[Count]] | None = None  # lists "length", "exact", "sequences"
    wrong_by_position: dict[str, list[Count]] | None = None  # lists "position", "wrong", "graded"
    params: Positive
    flops_per_sequence: Positive
    flops_by_part: dict[str, Count]
    curve: list[CurvePoint] | None = None


class Segment(Record):
    """A carried run's part trained in one shard: the steps done at its end, and how it was made there
    (None: an archive from before segments were recorded)."""
    steps: Count
    git_rev: str | None
    device: str | None
    compile: str | None


class Landed(Results):
    """A record of reports/paper/cells.json: a cell of the paper's grid trained and evaluated on a GPU, with
    what it cost and how it was made."""
    train_seconds: Seconds
    eval_seconds: Seconds
    peak_gpu_gib: Seconds | None
    device: str
    git_rev: str | None
    versions: dict[str, str]
    command: str
    compile: str | None = None  # how its training steps ran (`TrainRuntime.compile`); None: not recorded
    # a run carried over several shards: each shard's part, in order (device, git_rev and compile above
    # are the last one's); None: trained in one shard
    segments: list[Segment] | None = None


class TrainRuntime(Record):
    """runtime/train/<run>.json: the machine's and the moment's part of a training."""
    run: str
    train_seconds: Seconds
    segments: list[Seconds]
    peak_gpu_gib: Seconds | None
    device: str
    git_rev: str | None
    versions: dict[str, str]
    devices: Positive = 1
    cpu: str | None = None  # on the CPU: its model and the threads a run used (runtime.cpu); None: a GPU
    train_tokens_per_s: Seconds | None = None
    compile: str | None = None  # how its last segment's steps ran (training.COMPILE); None: not recorded


class EvaluateRuntime(Record):
    """runtime/evaluate/<run>.json."""
    run: str
    eval_seconds: Seconds
    device: str
    versions: dict[str, str]


class Split(Record):
    count: Count
    max_length: Positive


class Meta(Record):
    """data/datasets/<dataset>/meta.json: what a dataset is, and the checksum of each of its files."""
    task: str
    n: Count
    options: dict
    seed: Count
    generator_version: Positive
    vocab: list[str]
    separator: str
    unique_chain: bool
    max_len: Positive
    dtype: Literal["uint8", "uint16", "int32"]
    splits: dict[Literal["train", "val", "test"], Split]
    sha256: dict[str, Sha256]


def check(data, model: type[Record], path: Path | str) -> dict:
    """`data` (parsed JSON) as `model` says, or `CorruptFile` naming `path` and the first bad field."""
    if not isinstance(data, dict):
        raise CorruptFile(f"{path}: not a JSON object; delete it to let the stage write it again")
    try:
        model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(the whole file)"
        got = f", got {first['input']!r}" if first["type"] != "missing" else ""
        raise CorruptFile(f"{path}: {field}: {first['msg'].lower()}{got} (not what the pipeline writes; "
                          f"delete it to let the stage write it again)") from None
    return data


def parse(text: str, where: Path | str, hint: str = "") -> object:
    """The JSON `text` (the contents of `where`), or `CorruptFile` naming `where`."""
    try:
        return json.loads(text)
    except ValueError as err:
        raise CorruptFile(f"{where}: cannot be read ({err}){hint}") from None


def read(path: Path, hint: str = "") -> object:
    """The JSON in the file `path`, or `CorruptFile` naming it (`hint`: what to do about it)."""
    try:
        text = Path(path).read_text()
    except (OSError, ValueError) as err:  # ValueError: not text at all
        raise CorruptFile(f"{path}: cannot be read ({err}){hint}") from None
    return parse(text, path, hint)


def load(path: Path, model: type[Record]) -> dict | None:
    """The checked contents of `path`, or None if it does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    return check(read(path, "; delete it to let the stage write it again"), model, path)
