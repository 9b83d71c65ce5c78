"""Typed, validated parameters: one section per stage, every bad value caught with its path.

Hand-written on purpose: the sections are small, and a one-line message that names the field
(`params.yaml: generate.tasks.lis.sizes[1]: ...`) matters more here than what a schema library adds.
Plain data that imports nothing of the project: the report stage runs where torch is not installed,
and depends on no generator. What needs a registry is checked where the registry is: task names and
options by `generation.tasks_of` (the generate stage), attention names and options by the train stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml


class ParamError(ValueError):
    """A parameter is missing or has a bad type or value; the message names it."""


def load_yaml(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ParamError(f"{path}: no such parameters file")
    try:
        text = path.read_text()
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ParamError(f"{path}: not valid YAML{where} ({problem})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ParamError(f"{path}: cannot be read ({err})") from None
    if text.startswith("# @package _global_"):  # Hydra's mark on conf/profile/*.yaml
        raise ParamError(f"{path}: a profile, only what it changes over the defaults; give --profile "
                         f"{path.stem} (or write it out: python -m pipeline params --profile {path.stem})")
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
    task: str
    n: object  # the problem size as written; `generation.tasks_of` checks it
    options: dict = field(default_factory=dict, hash=False)
    where: str = ""  # the field that names it, for messages: generate.tasks.lis.sizes[1]

    @property
    def name(self) -> str:
        return f"{self.task}_n{self.n}"


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
            spec = _mapping(spec, at)
            _only(spec, {"sizes", "options"}, at)
            options = _mapping(spec.get("options") or {}, f"{at}.options")
            task_sizes = spec.get("sizes")
            if not isinstance(task_sizes, list) or not task_sizes:
                raise ParamError(f"{at}.sizes: expected a non-empty list of problem sizes, got {task_sizes!r}")
            if len(set(map(repr, task_sizes))) != len(task_sizes):
                raise ParamError(f"{at}.sizes: repeated size in {task_sizes}")
            datasets += [Dataset(name, n, options, f"{at}.sizes[{i}]") for i, n in enumerate(task_sizes)]
        return cls(seed, sizes, datasets)


def _number(value, where: str, low: float, high: float | None = None, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParamError(f"{where}: expected a number, got {value!r}")
    if value < low or (low_open and value == low) or (high is not None and value > high):
        bound = f"in ({low}, {high}]" if low_open else f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ParamError(f"{where}: must be {bound}, got {value!r}")
    return float(value)


def _list(value, where: str, item) -> list:
    if not isinstance(value, list) or not value:
        raise ParamError(f"{where}: expected a non-empty list, got {value!r}")
    out = [item(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if len(set(map(repr, out))) != len(out):
        raise ParamError(f"{where}: repeated entry in {value}")
    return out


@dataclass(frozen=True)
class Run:
    """One training run of the sweep."""

    dataset: str
    attention: str
    width: int
    seed: int

    @property
    def id(self) -> str:
        return f"{self.dataset}-{self.attention}-w{self.width}-s{self.seed}"


# train.compile: how a training step runs on a GPU (see training.compiled_loss); auto picks by width
COMPILE_MODES = ("auto", "none", "cudagraphs", "inductor", "inductor-cudagraphs", "max-autotune")


@dataclass(frozen=True)
class TrainParams:
    sweep: str
    datasets: list[str]
    attentions: list[str]
    widths: list[int]
    seeds: list[int]
    layers: int
    heads: int
    dropout: float
    attention_options: dict[str, dict]
    batch_size: int
    lr: float
    lr_width: int | None  # above this width the rate falls as 1/width (training.learning_rate); None: never
    weight_decay: float
    warmup_steps: int
    decay_fraction: float
    grad_clip: float
    max_steps: int
    val_every: int
    stop_at: float
    val_generation: int
    concurrency: int
    compile: str
    devices: int = 1  # processes (GPUs, or CPU processes) one training uses: > 1 is Lightning's DDP

    KEYS = ("sweep", "datasets", "attentions", "widths", "seeds", "layers", "heads", "dropout", "attention_options",
            "batch_size", "lr", "lr_width", "weight_decay", "warmup_steps", "decay_fraction", "grad_clip", "max_steps",
            "val_every", "stop_at", "val_generation", "concurrency", "compile", "devices")
    OPTIONAL = {"devices": 1, "lr_width": None}  # keys a train section may leave out, and their values then

    @property
    def runs(self) -> list[Run]:
        return [Run(d, a, w, s)
                for d in self.datasets for a in self.attentions for w in self.widths for s in self.seeds]

    def training(self) -> dict:
        """The settings every run shares (what a finished run is compared against to be reused)."""
        # how runs are scheduled, compiled and spread over devices decides no weights (beyond float
        # rounding: a DDP training's gradients are those of the same global batch, summed in another order)
        skip = {"sweep", "datasets", "attentions", "widths", "seeds", "concurrency", "compile", "devices"}
        return {k: getattr(self, k) for k in self.KEYS if k not in skip}

    def fit_settings(self) -> dict:
        """What `training.fit` trains a run with: the shared settings and how a step is compiled."""
        return {**self.training(), "compile": self.compile}

    @classmethod
    def parse(cls, section, where: str = "train") -> TrainParams:
        section = _mapping(section, where)
        _only(section, set(cls.KEYS), where)
        section = {**cls.OPTIONAL, **section}
        for key in cls.KEYS:
            if key not in section:
                raise ParamError(f"{where}.{key}: missing")
        at = lambda k: f"{where}.{k}"  # noqa: E731

        def dataset(v, w):
            if not isinstance(v, str) or "_n" not in v:
                raise ParamError(f"{w}: expected a dataset name like ed_n6, got {v!r}")
            return v

        def attention(v, w):  # the registry is asked by the train stage (it needs torch)
            if not isinstance(v, str) or not v.isidentifier():
                raise ParamError(f"{w}: expected an attention type name, got {v!r}")
            return v

        sweep = section["sweep"]
        if not isinstance(sweep, str) or not sweep:
            raise ParamError(f"{at('sweep')}: expected a name, got {sweep!r}")
        heads = _int(section["heads"], at("heads"), 1)
        widths = _list(section["widths"], at("widths"), lambda v, w: _int(v, w, 1))
        for i, width in enumerate(widths):
            if width % heads:
                raise ParamError(f"{at('widths')}[{i}]: width {width} is not divisible by heads {heads}")
        attentions = _list(section["attentions"], at("attentions"), attention)
        options = _mapping(section["attention_options"] or {}, at("attention_options"))
        for name, opts in options.items():
            _mapping(opts or {}, f"{at('attention_options')}.{name}")
        max_steps = _int(section["max_steps"], at("max_steps"), 1)
        val_every = _int(section["val_every"], at("val_every"), 1)
        if max_steps % val_every:
            raise ParamError(f"{at('val_every')}: must divide train.max_steps ({max_steps}) so that training "
                             f"ends with a validation, got {val_every}")
        concurrency = section["concurrency"]
        if concurrency != "auto":
            concurrency = _int(concurrency, at("concurrency"), 1)
        compile_mode = section["compile"]
        if compile_mode not in COMPILE_MODES:
            raise ParamError(f"{at('compile')}: expected one of {', '.join(COMPILE_MODES)}, got {compile_mode!r}")
        devices = _int(section["devices"], at("devices"), 1)
        batch_size = _int(section["batch_size"], at("batch_size"), 1)
        if batch_size % devices:
            raise ParamError(f"{at('batch_size')}: {batch_size} is not divisible by train.devices ({devices}): "
                             "each device takes an equal share of every batch")
        if devices > 1 and concurrency not in ("auto", 1):
            raise ParamError(f"{at('concurrency')}: must be 1 or auto when train.devices is {devices} (a training "
                             f"over several devices has them all), got {concurrency}")
        return cls(
            sweep=sweep,
            datasets=_list(section["datasets"], at("datasets"), dataset),
            attentions=attentions,
            widths=widths,
            seeds=_list(section["seeds"], at("seeds"), lambda v, w: _int(v, w, 0)),
            layers=_int(section["layers"], at("layers"), 1),
            heads=heads,
            dropout=_number(section["dropout"], at("dropout"), 0.0, 0.99),
            attention_options={k: dict(v or {}) for k, v in options.items()},
            batch_size=batch_size,
            lr=_number(section["lr"], at("lr"), 0.0, low_open=True, high=1.0),
            lr_width=None if section["lr_width"] is None else _int(section["lr_width"], at("lr_width"), 1),
            weight_decay=_number(section["weight_decay"], at("weight_decay"), 0.0),
            warmup_steps=_int(section["warmup_steps"], at("warmup_steps"), 0),
            decay_fraction=_number(section["decay_fraction"], at("decay_fraction"), 0.0, 1.0),
            grad_clip=_number(section["grad_clip"], at("grad_clip"), 0.0),
            max_steps=max_steps,
            val_every=val_every,
            stop_at=_number(section["stop_at"], at("stop_at"), 0.0, 1.0),
            val_generation=_int(section["val_generation"], at("val_generation"), 0),
            concurrency=0 if concurrency == "auto" else concurrency,
            compile=compile_mode,
            devices=devices,
        )


@dataclass(frozen=True)
class EvaluateParams:
    batch_size: int
    generation_samples: int | None  # answer accuracy by generation on this many test samples (None: all)
    concurrency: int = 0  # runs evaluated at once (0: auto, 1 on the CPU, several on a GPU)

    KEYS = ("batch_size", "generation_samples", "concurrency")

    def grading(self) -> dict:
        """The settings that decide a run's scores (what a results file is compared against)."""
        return {"batch_size": self.batch_size, "generation_samples": self.generation_samples}

    @classmethod
    def parse(cls, section, where: str = "evaluate") -> EvaluateParams:
        section = _mapping(section, where)
        _only(section, set(cls.KEYS), where)
        for key in cls.KEYS:
            if key not in section:
                raise ParamError(f"{where}.{key}: missing")
        limit = section["generation_samples"]
        concurrency = section["concurrency"]
        return cls(_int(section["batch_size"], f"{where}.batch_size", 1),
                   None if limit is None else _int(limit, f"{where}.generation_samples", 1),
                   0 if concurrency == "auto" else _int(concurrency, f"{where}.concurrency", 1))


@dataclass(frozen=True)
class ReportParams:
    thresholds: list[float]  # accuracies for the minimal-width tables and compute curves
    budgets: list[int] = field(default_factory=list)  # training sequences at which to read the curves

    @classmethod
    def parse(cls, section, where: str = "report") -> ReportParams:
        section = _mapping(section, where)
        _only(section, {"thresholds", "budgets"}, where)
        if "thresholds" not in section:
            raise ParamError(f"{where}.thresholds: missing")
        budgets = (_list(section["budgets"], f"{where}.budgets", lambda v, w: _int(v, w, 1))
                   if "budgets" in section else [])
        return cls(_list(section["thresholds"], f"{where}.thresholds",
                         lambda v, w: _number(v, w, 0.0, 1.0, low_open=True)), budgets)


def load_section(path: Path, name: str):
    data = load_yaml(path)
    if name not in data:
        raise ParamError(f"{path}: no '{name}' section")
    parsers = {"generate": GenerateParams.parse, "train": TrainParams.parse, "evaluate": EvaluateParams.parse,
               "report": ReportParams.parse}
    try:
        return parsers[name](data[name], name)
    except ParamError as err:
        raise ParamError(f"{path}: {err}") from None
