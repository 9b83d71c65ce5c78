"""Predicted GPU-hours of a profile's sweep, from the throughput the train stage measured.

    python -m pipeline predict-hours --profile paper

Every run of the profile (datasets x attentions x widths x seeds) is costed as if trained to the cap,
`max_steps` x `batch_size` sequences of the dataset's padded length, at the tokens/s of the nearest
measured `python -m benchmarks train` record of its attention type (nearest width, then nearest length), plus that
record's start-up seconds; runs one after another. A run shorter than its record is priced at the
record's seconds a step, not at its tokens/s: a small model's step costs about the same at L=72 as
at L=212 (ED n=6 standard w32 took 99.5 s to the cap alone on an H200, which the record's
tokens/s priced at 55 s). So the price is an upper bound on training (validations are
not priced; the records' start-up is): a run that passes `stop_at` stops early, a larger model's
shorter step is cheaper than priced, and small models that share the GPU overlap. `--caps` prices
other caps, so the cap's cost can be weighed against what the schedule study says it buys.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

# `python -m benchmarks train` measurements, curated: each keeps its command, revision and device
DEFAULT_BENCH = (Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "throughput.json",)


def load_records(paths: list[Path]) -> list[dict]:
    """bench-train records, each tagged with the file it came from; of two records of one attention,
    width and length, the faster compile mode (the one `compile: auto` should pick) is kept. A record
    that failed (an `error`, no throughput) prices nothing."""
    best: dict[tuple, dict] = {}
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such benchmark file (write it with python -m benchmarks train)")
        data = json.loads(path.read_text())
        # a file of `python -m benchmarks train`, or a curated file of several such measurements
        for record in [r for m in data.get("measurements", [data]) for r in m.get("records", [])]:
            if "tokens_per_s" not in record:
                continue
            key = (record["attention"], record["width"], record["L"])
            if key not in best or record["tokens_per_s"] > best[key]["tokens_per_s"]:
                best[key] = {**record, "source": str(path)}
    return list(best.values())


def nearest(records: list[dict], attention: str, width: int, length: int) -> dict:
    """The record of `attention` nearest in width (on a log scale), then in length; for a type never
    benchmarked (a newly added one), the standard model's."""
    own = [r for r in records if r["attention"] == attention]
    if not own:
        own = [r for r in records if r["attention"] == "standard"]
    if not own:
        raise ValueError(f"no benchmark record of {attention} attention or of the standard model")
    return min(own, key=lambda r: (abs(math.log2(r["width"] / width)), abs(r["L"] - length)))


def prices(params: Path, bench: list[Path] | None = None) -> dict[str, float]:
    """Run id -> its predicted seconds alone, to the profile's cap, from the `bench` files (default: the
    committed one)."""
    prediction = predict(params, load_records(list(bench or DEFAULT_BENCH)))
    return next(iter(prediction["caps"].values()))["per_run"]


def predict(params: Path, records: list[dict], caps: list[int] | None = None) -> dict:
    from .generation import tasks_of
    from .params import load_section

    generate, train = load_section(params, "generate"), load_section(params, "train")
    lengths = {d.name: task.max_len for d, task in tasks_of(generate, str(params))}
    profile_cap = train.max_steps * train.batch_size
    out = {"params": str(params), "batch_size": train.batch_size, "profile_cap": profile_cap, "caps": {}}
    for cap in caps or [profile_cap]:
        runs = []
        for run in train.runs:
            length = lengths[run.dataset]
            r = nearest(records, run.attention, run.width, length)
            positions = max(length, r["L"] - 1)  # a record's L counts the token its last position predicts
            seconds = cap * positions / r["tokens_per_s"] + r.get("startup_seconds", 0.0)
            runs.append({"run": run.id, "dataset": run.dataset, "attention": run.attention, "width": run.width,
                         "seconds": seconds, "from": f"{r['attention']} w{r['width']} L={r['L']}"})
        by_width = {w: sum(x["seconds"] for x in runs if x["width"] == w) / 3600 for w in train.widths}
        figure3 = [x for x in runs if x["dataset"].startswith("ed_n")]
        # Figure 2 shows ED_Local for the efficient models only
        figures = [x for x in runs if not (x["dataset"].startswith("ed_local") and x["attention"] == "standard")]
        out["caps"][str(cap)] = {
            "per_run": {x["run"]: round(x["seconds"], 1) for x in runs},
            "runs": len(runs), "hours": sum(x["seconds"] for x in runs) / 3600,
            "figures_1_to_3_hours": sum(x["seconds"] for x in figures) / 3600,
            "figure_3_hours": sum(x["seconds"] for x in figure3) / 3600, "figure_3_runs": len(figure3),
            "hours_by_width": by_width}
    out["throughput"] = sorted({(r["attention"], r["width"], r["L"], round(r["tokens_per_s"] / 1e6, 2), r["source"])
                                for r in records})
    return out


def table(prediction: dict) -> str:
    widths = next(iter(prediction["caps"].values()))["hours_by_width"]
    lines = ["| cap (sequences) | runs | all runs | Figures 1-3 | Figure 3 | " + " | ".join(f"w{w}" for w in widths)
             + " |", "| --- " * (5 + len(widths)) + "|"]
    for cap, c in prediction["caps"].items():
        lines.append(f"| {int(cap) / 1e6:g}M | {c['runs']} | {c['hours']:.1f} | {c['figures_1_to_3_hours']:.1f} | "
                     f"{c['figure_3_hours']:.1f} | " + " | ".join(f"{h:.1f}" for h in c["hours_by_width"].values())
                     + " |")
    return "\n".join(lines)


def main(params: Path, bench: list[Path] | None, caps: list[int] | None, out: Path | None) -> dict:
    prediction = predict(params, load_records(list(bench or DEFAULT_BENCH)), caps)
    print(f"predicted GPU-hours of {params} (every run to the cap, one after another: an upper bound)")
    print(table(prediction))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(prediction, indent=1) + "\n")
    return prediction
