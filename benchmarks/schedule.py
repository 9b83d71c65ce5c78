"""The schedule study: validation accuracy against training sequences seen, for each
configuration (task, attention, width, learning rate, dropout), trained by the train stage's own
`training.fit` with a constant learning rate after warm-up (no decay: the study asks when each model
leaves its plateau, which a decay would hide) and a cap on sequences; `--decay-fraction` trains the
chosen schedule whole (its decay at the end), to check it.

    python -m benchmarks schedule                      # the study, on the GPU
    python -m benchmarks schedule --only ed_n12-linear  # configurations whose name contains this
    python -m benchmarks schedule --plot               # curves.png and table.md from study.json

Each configuration's curve is added to `study.json` as soon as it is trained, keyed by its name,
so several GPU jobs, each training a share, compose into one study; a configuration already
in the file is skipped. `--plot` reads only the JSON (no torch).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Config:
    task: str
    n: int
    attention: str
    width: int
    lr: float
    dropout: float
    decay: float = 0.0  # the last fraction of the cap over which the rate decays (0: constant to the end)
    cap: int = 0  # the cap on sequences it was trained to, named where it decides the schedule (decay > 0)

    @property
    def name(self) -> str:
        name = f"{self.task}_n{self.n}-{self.attention}-w{self.width}-lr{self.lr:g}-d{self.dropout:g}"
        return name + (f"-decay{self.decay:g}-cap{self.cap / 1e6:g}M" if self.decay else "")


def configs(datasets: list[str], attentions: list[str], widths: list[int], lrs: list[float],
            dropouts: list[float], extra_dropout: dict[str, float], decay: float = 0.0,
            cap: int = 0, lr_width: int | None = None) -> list[Config]:
    """Every dataset x attention x width x lr x dropout, plus `extra_dropout` (attention -> dropout)
    at every lr: dropout 0.1 for the standard model. `decay` > 0 trains a profile's whole
    schedule (constant, then a linear decay over that last fraction of `cap` sequences). `lr_width`:
    each lr scaled by the profiles' width rule (`training.learning_rate`), the configuration named by
    the rate it trains at; None: every lr as given, at every width."""
    from pipeline.training import learning_rate

    out = []
    for dataset in datasets:
        task, n = dataset.rsplit("_n", 1)
        for attention in attentions:
            for width in widths:
                for lr in lrs:
                    drops = list(dropouts) + ([extra_dropout[attention]] if attention in extra_dropout else [])
                    rate = learning_rate(lr, lr_width, width)
                    out += [Config(task, int(n), attention, width, rate, d, decay, cap if decay else 0)
                            for d in dict.fromkeys(drops)]
    return out


def settings(config: Config, batch: int, sequences: int, val_every: int, warmup: int, stop_at: float) -> dict:
    """bench-train's training settings, with the configuration's lr, dropout and decay, and
    validations (with early stop) every `val_every` steps up to the cap on sequences."""
    from .train import settings as bench_settings

    steps = max(val_every, sequences // batch // val_every * val_every)
    return {**bench_settings(batch, steps, "auto"), "dropout": config.dropout, "lr": config.lr,
            "warmup_steps": warmup, "decay_fraction": config.decay, "val_every": val_every, "stop_at": stop_at,
            "val_generation": 256}


def train_curve(config: Config, folder: Path, meta: dict, run_settings: dict, work: Path,
                seconds: float | None = None, partial: Path | None = None, extra: dict | None = None) -> dict:
    """One configuration's validation curve; `seconds` (Lightning's Timer) stops its training when
    that much time has passed, and the curve so far is kept as `cut off`. `partial`: a file that holds
    the curve so far after every validation, so that a process killed from outside (a GPU lease that
    ends) still leaves its curve, which `run` and `plot` take in as `cut off`; `extra`: fields it
    carries too (the provenance)."""
    from datetime import timedelta

    from lightning.pytorch.callbacks import Timer

    from pipeline.execution.callbacks import Curve
    from pipeline.training import fit

    start = time.perf_counter()

    def keep(points: list[dict]) -> None:  # the curve so far, for a process killed from outside
        partial.parent.mkdir(parents=True, exist_ok=True)
        record = record_of(config, run_settings, "cut off", "stopped from outside", time.perf_counter() - start,
                           points)
        tmp = partial.with_suffix(".tmp")
        tmp.write_text(json.dumps({**record, **(extra or {})}) + "\n")
        tmp.replace(partial)

    curve = Curve(run_settings["batch_size"], ("val/acc", "val/loss", "val/token_acc"),
                  keep if partial is not None else None)
    timer = [Timer(duration=timedelta(seconds=max(1.0, seconds)), interval="step")] if seconds is not None else []
    result = fit(folder, meta, work / config.name, {"attention": config.attention, "width": config.width, "seed": 0},
                 run_settings, callbacks=[curve, *timer])
    stopped = result["status"] == "finished" and timer and timer[0].time_remaining("train") <= 0
    reached = curve.points and (curve.points[-1].get("acc", 0) >= run_settings["stop_at"]
                                or curve.points[-1]["step"] >= run_settings["max_steps"])
    return record_of(config, run_settings, "cut off" if stopped and not reached else result["status"],
                     result["reason"], time.perf_counter() - start, curve.points)


def record_of(config: Config, run_settings: dict, status: str, reason: str | None, seconds: float,
              points: list[dict]) -> dict:
    return {"config": asdict(config), "settings": run_settings, "status": status, "reason": reason,
            "seconds": round(seconds, 1), "curve": list(points),
            **{f"sequences_to_{int(t * 100)}": first_at(points, t) for t in (0.9, 0.99)}}


def load_study(out: Path) -> dict:
    """study.json in `out`, with the curves that killed processes left in out/partial/ taken in as
    `cut off` where the study has no record of their own."""
    path = out / "study.json"
    study = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    for part in sorted((out / "partial").glob("*.json")):
        name = part.stem
        if name not in study["runs"]:
            study["runs"][name] = json.loads(part.read_text())
    return study


def first_at(points: list[dict], threshold: float) -> int | None:
    return next((p["sequences"] for p in points if p.get("acc", -1) >= threshold), None)


CLOSING_SECONDS = 20.0  # of a budget, kept for what follows the timer's stop (a last save, tearing down)
ESTIMATE_SECONDS = 150.0  # a configuration's guessed cost before any of its attention type is in the study


def estimate(study: dict, config: Config, sequences: int | None = None) -> float:
    """Seconds `config` will probably take up to `sequences`: the slowest recorded configuration of its
    attention type and width, per sequence it saw, else `ESTIMATE_SECONDS`."""
    seconds = [r["seconds"] * (sequences / r["curve"][-1]["sequences"] if sequences and r["curve"] else 1.0)
               for r in study["runs"].values()
               if (r["config"]["attention"], r["config"]["width"]) == (config.attention, config.width)]
    return max(seconds, default=ESTIMATE_SECONDS)


def run(out: Path, chosen: list[Config], batch: int, sequences: int, val_every: int, warmup: int, stop_at: float,
        train_size: int, git: str | None = None, budget: float | None = None) -> dict:
    """`budget`: seconds this command may take; a configuration whose estimate no longer fits is left
    for a later run (so a time-limited GPU job never kills one half-trained)."""
    from pipeline.data import verify
    from pipeline.execution.runtime import quiet
    from pipeline.generation import write_dataset
    from pipeline.tasks import make_task

    from .train import provenance

    quiet()
    began = time.perf_counter()
    path = out / "study.json"
    study = load_study(out)
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    extra = {**provenance(device, git), "train_size": train_size}
    with tempfile.TemporaryDirectory(prefix="study-") as tmp:
        tmp = Path(tmp)
        for config in chosen:
            if study["runs"].get(config.name, {}).get("status") not in (None, "cut off"):  # a cut-off one again
                print(f"study: {config.name}: already in {path}, skipped", flush=True)
                continue
            guess = estimate(study, config, sequences)
            if budget is not None and time.perf_counter() - began + guess > budget:
                print(f"study: {config.name}: left for a later run (about {guess:.0f}s, "
                      f"{budget - time.perf_counter() + began:.0f}s of the budget left)", flush=True)
                continue
            folder = tmp / f"{config.task}_n{config.n}"
            if not folder.exists():
                write_dataset(make_task(config.task, config.n),  # the tasks' defaults: the paper's options
                              {"train": train_size, "val": 1000, "test": 16}, 2023, folder)
            left = None if budget is None else budget - (time.perf_counter() - began) - CLOSING_SECONDS
            partial = out / "partial" / f"{config.name}.json"
            record = train_curve(config, folder, verify(folder),
                                 settings(config, batch, sequences, val_every, warmup, stop_at), tmp, left,
                                 partial, extra) | extra
            study["runs"][config.name] = record
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(study, indent=1) + "\n")  # after every configuration
            partial.unlink(missing_ok=True)
            last = record["curve"][-1] if record["curve"] else {}
            print(f"study: {config.name}: {record['status']}, acc {last.get('acc')} after {last.get('sequences')} "
                  f"sequences, 90% at {record['sequences_to_90']}, 99% at {record['sequences_to_99']}, "
                  f"{record['seconds']}s", flush=True)
    return study


def plot(out: Path) -> None:
    """curves.png (one panel per dataset, one line per configuration) and table.md."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    study = load_study(out)
    runs = sorted(study["runs"].values(), key=lambda r: Config(**r["config"]).name)
    datasets = sorted({(r["config"]["task"], r["config"]["n"]) for r in runs})
    cols = min(3, len(datasets))  # rows of three panels: the figure stays readable as datasets are added
    rows = -(-len(datasets) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 8 * rows), squeeze=False)
    for ax in axes.flat[len(datasets):]:
        ax.set_visible(False)
    # colour family by attention type, shade by learning rate, dashed with dropout, thicker when wider:
    # 10 default colours repeat once a panel holds more than 10 lines
    families = {"standard": "Blues", "sparse": "Reds", "linear": "Greens"}
    lrs = sorted({r["config"]["lr"] for r in runs})
    for ax, (task, n) in zip(axes.flat, datasets):
        for r in (r for r in runs if (r["config"]["task"], r["config"]["n"]) == (task, n)):
            c = r["config"]
            shade = 0.45 + 0.5 * lrs.index(c["lr"]) / max(1, len(lrs) - 1)
            ax.plot([p["sequences"] / 1e6 for p in r["curve"]], [p.get("acc", float("nan")) for p in r["curve"]],
                    color=plt.get_cmap(families.get(c["attention"], "Greys"))(shade),
                    linestyle="--" if c["dropout"] else "-", linewidth=1.5 * (c["width"] / 256) ** 0.5,
                    label=f"{c['attention']} w{c['width']} lr {c['lr']:g} dropout {c['dropout']:g}"
                          + (f", decay {c['decay']:g} to {c['cap'] / 1e6:g}M" if c.get("decay") else ""))
        ax.set(title=f"{task} n={n}", xlabel="training sequences (millions)", ylabel="validation accuracy",
               ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)  # off the curves
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    lines = ["| configuration | status | sequences to 90% | sequences to 99% | last accuracy | sequences seen "
             "| seconds | device |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        last = r["curve"][-1] if r["curve"] else {}
        fmt = lambda v: "not reached" if v is None else f"{v / 1e6:.2f}M"  # noqa: E731
        lines.append(f"| {Config(**r['config']).name} | {r['status']} | {fmt(r['sequences_to_90'])} | "
                     f"{fmt(r['sequences_to_99'])} | {last.get('acc')} | {fmt(last.get('sequences'))} | "
                     f"{r['seconds']} | {r.get('device', '')} |")
    revs = sorted({r.get("git_rev") for r in runs if r.get("git_rev")})
    (out / "table.md").write_text("# Schedule study: validation accuracy against sequences seen\n\n"
                                  "Constant learning rate after warm-up, no decay (a name ending in -decayF-capNM: "
                                  "constant, then decayed over the last fraction F of the cap); `python -m benchmarks "
                                  f"schedule` at {', '.join(revs)}. Curves: curves.png.\n\n"
                                  + "\n".join(lines) + "\n")
