"""Where the paper's grid stands: the cells each figure needs (a profile's runs), which of them are
trained (a landed record in reports/paper/cells.json), implied by the width search, failed or missing, the
GPU-hours they took and the hours predicted for what is left.

The search: per (task, size, attention type), widths are trained in increasing order, and a width
above the first that passes `SEARCH_THRESHOLD` is implied by it rather than trained (a figure draws
it as implied, never as a number).
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

from .execution.io import say, write_json
from .layout import PAPER_CELLS
from .params import Run, TrainParams, load_section
from .records import CorruptFile, Landed, check, read

# figure -> (tasks, attention types): Figure 1 the 3x3 panel, Figure 2 ED_Local for the efficient
# models, Figure 3 ED for the three models
FIGURES = {"1": (("arithmetic", "ed", "lis"), ("standard", "sparse", "linear")),
           "2": (("ed_local",), ("sparse", "linear")),
           "3": (("ed",), ("standard", "sparse", "linear"))}
SEARCH_THRESHOLD = 0.9


def task_of(dataset: str) -> str:
    return dataset.rsplit("_n", 1)[0]


def landed_file(path: Path = PAPER_CELLS) -> tuple[list[dict], dict[str, dict]]:
    """cells.json read once: every landed record, each checked (a cell trained twice has two), and
    shard file name -> {"seconds", "device", "carried", "carry"} of every landed shard, those that
    landed no cell too (all their runs carried on): their device time counts all the same."""
    path = Path(path)
    if not path.exists():
        return [], {}
    data = read(path)
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise CorruptFile(f"{path}: not the landed cells (expected {{\"cells\": [...]}})")
    shards = data.get("shards", {})
    if not isinstance(shards, dict) or not all(isinstance(v, dict) for v in shards.values()):
        raise CorruptFile(f"{path}: shards: expected {{\"shard file\": {{\"seconds\": ...}}}}")
    return [check(r, Landed, f"{path}: cells[{i}]") for i, r in enumerate(data["cells"])], shards


def all_landed(path: Path = PAPER_CELLS) -> list[dict]:
    """Every landed record, each checked (a cell trained twice has two)."""
    return landed_file(path)[0]


def landed(path: Path = PAPER_CELLS) -> dict[str, dict]:
    """run id -> its landed record (the first, where a cell was trained more than once)."""
    return first_records(all_landed(path))


def first_records(records: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for record in records:
        out.setdefault(record["run"], record)
    return out


def passes(record: dict) -> bool:
    """Whether a landed record passes the width search's threshold."""
    return record["status"] == "finished" and (record["graded_acc"] or 0.0) >= SEARCH_THRESHOLD


def cell_status(run: Run, widths: list[int], records: dict[str, dict]) -> str:
    """trained, failed, implied (a narrower width of its task, size and type passed the search
    threshold) or missing."""
    record = records.get(run.id)
    if record is not None:
        return "trained" if record["status"] == "finished" else "failed"
    for width in (w for w in widths if w < run.width):
        narrower = records.get(Run(run.dataset, run.attention, width, run.seed).id)
        if narrower and passes(narrower):
            return "implied"
    return "missing"


def searched_next(run: Run, widths: list[int], records: dict[str, dict]) -> bool:
    """Whether the width search trains `run` next: missing, and every narrower width of its task, size
    and type landed without passing (one that passed would imply it)."""
    return cell_status(run, widths, records) == "missing" and all(
        Run(run.dataset, run.attention, w, run.seed).id in records for w in widths if w < run.width)


def gpu_hours(records: list[dict], landed_shards: dict[str, dict] | None = None) -> float:
    """GPU-hours the records took: each shard's wall seconds once (its cells shared the GPU) times the
    GPUs of its host (`gpus`, 1 where a shard did not say), and a record landed without its shard's
    seconds, its own training and evaluation seconds; and the seconds of `landed_shards` (a shard
    whose runs were all carried on lands no record)."""
    known = landed_shards or {}

    def gpus(name: str) -> int:
        return (known.get(name) or {}).get("gpus") or 1

    shards = {name: s["seconds"] * gpus(name) for name, s in known.items()
              if s.get("device", "cpu") != "cpu" and isinstance(s.get("seconds"), (int, float))}
    alone = 0.0
    for r in records:
        if r.get("device", "cpu") == "cpu":
            continue
        if r.get("shard_seconds") is not None:
            shards[r["shard"]] = r["shard_seconds"] * gpus(r["shard"])
        else:
            alone += r["train_seconds"] + r["eval_seconds"]
    return (sum(shards.values()) + alone) / 3600


def status(params_path: Path, folder: Path = PAPER_CELLS, prices: dict[str, float] | None = None,
           too_large: set[str] | None = None) -> dict:
    """Per figure: cells, trained, implied, failed, missing, the missing cells the search trains next
    (`next`), and the hours predicted for the missing and for the next (`prices`: run id -> seconds,
    each run alone to its cap); with `too_large` (run ids too large to carry), how many of the missing
    are (`too_large`) and their hours; and the GPU-hours the landed cells took."""
    train: TrainParams = load_section(params_path, "train")
    everything, shards = landed_file(folder)
    records = first_records(everything)
    figures = {}
    for figure, (tasks, attentions) in FIGURES.items():
        runs = [r for r in train.runs if task_of(r.dataset) in tasks and r.attention in attentions]
        states = {r.id: cell_status(r, train.widths, records) for r in runs}
        counts = Counter(states.values())
        following = [r.id for r in runs if searched_next(r, train.widths, records)]
        figures[figure] = {"cells": len(runs), **{k: counts[k] for k in ("trained", "implied", "failed", "missing")},
                           "next": len(following)}
        if prices is not None:
            figures[figure]["hours_left"] = round(sum(prices[i] for i, s in states.items() if s == "missing") / 3600, 2)
            figures[figure]["hours_next"] = round(sum(prices[i] for i in following) / 3600, 2)
        if too_large is not None:
            big = [i for i, s in states.items() if s == "missing" and i in too_large]
            figures[figure]["too_large"] = len(big)
            if prices is not None:
                figures[figure]["hours_too_large"] = round(sum(prices[i] for i in big) / 3600, 2)
    going = in_progress(shards, records)
    resumable = in_progress(shards, records, carry_of(folder))
    return {"figures": figures, "gpu_hours": round(gpu_hours(everything, shards), 3),
            "carried": {str(carry_of(folder) / a): runs for a, runs in resumable.items()},
            "lost": {a: runs for a, runs in going.items() if a not in resumable}}


def carried_steps(shard: dict) -> dict[str, int | None]:
    """A landed shard's carried runs -> the steps each had done (None where a shard landed before
    steps were kept)."""
    carried = shard.get("carried") or {}
    return dict(carried) if isinstance(carried, dict) else dict.fromkeys(carried)


def in_progress(shards: dict[str, dict], records: dict[str, dict],
                folder: Path | None = None) -> dict[str, dict[str, int | None]]:
    """The carry archive of the latest landed shard that carried runs -> those of its runs not landed
    since, with the steps they had done: what the next shard resumes. With `folder` (where `land`
    keeps the archive), nothing unless the archive is there: runs that cannot be resumed restart."""
    for name in sorted(shards, reverse=True):  # shard-YYYYmmdd-HHMMSS.json: the latest first
        if shards[name].get("carried"):
            left = {r: n for r, n in carried_steps(shards[name]).items() if r not in records}
            archive = shards[name]["carry"]
            return {archive: left} if left and (folder is None or (Path(folder) / archive).is_file()) else {}
    return {}


def carry_of(cells: Path) -> Path:
    """The folder `land` keeps the carry archive of the runs in progress in: beside the landed cells."""
    return Path(cells).parent / "carry"


def part(archive: Path, i: int) -> Path:
    """The archive's part `i`: the archive itself first, then `.1`, `.2`, ... beside it."""
    return archive.with_name(f"{archive.name}.{i}") if i else archive


def parts_of(archive: Path) -> list[Path]:
    """The archive's parts, as far as they exist."""
    out = [archive]
    while part(archive, len(out)).exists():
        out.append(part(archive, len(out)))
    return out


def keep_carry(sources: dict[str, tuple[Path, int]], shards: dict[str, dict], records: dict[str, dict],
               folder: Path) -> None:
    """The archive of the runs in progress (`in_progress`) into `folder`, from beside the shard file it
    came with (`sources`: archive name -> (its first part there, parts written)), every part or none;
    then the earlier archives there are removed: their runs landed since, or went on in this one. An
    archive that did not come back whole is said, and the earlier ones kept."""
    going = in_progress(shards, records)
    for archive, runs in going.items():  # at most one
        source, parts = sources.get(archive, (None, 0))
        parts = parts or (len(parts_of(source)) if source else 1)  # a shard file from before parts were counted
        if source is not None and all(part(source, i).is_file() for i in range(parts)):
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(parts):
                tmp = folder / f".{part(source, i).name}.tmp"  # each part whole or not there
                shutil.copyfile(part(source, i), tmp)
                tmp.replace(folder / part(source, i).name)
        if not (folder / archive).is_file():
            say(f"land: {archive} did not come back whole beside its shard file, nor is it in {folder}: "
                f"its {len(runs)} runs in progress ({', '.join(runs)}) cannot be resumed and restart")
            return
    kept = {p.name for archive in going for p in parts_of(folder / archive)}
    for stale in folder.glob("carry-*") if folder.is_dir() else []:
        if stale.name not in kept:
            stale.unlink()


def table(state: dict) -> str:
    lines = ["| figure | cells | trained | implied | failed | missing | next in the search | hours: missing / next |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for figure, c in state["figures"].items():
        left, following = c.get("hours_left"), c.get("hours_next")
        hours = "-" if left is None else f"{left:.1f} / {following:.1f}"
        lines.append(f"| {figure} | {c['cells']} | {c['trained']} | {c['implied']} | {c['failed']} | {c['missing']} | "
                     f"{c['next']} | {hours} |")
    def listed(runs: dict) -> str:
        return ", ".join(r if n is None else f"{r} ({n} steps)" for r, n in runs.items())

    carried = "".join(f"\nIn progress, resumed by the next shard from {archive}: {listed(runs)}"
                      for archive, runs in state.get("carried", {}).items())
    carried += "".join(f"\nCarried in {archive}, which was not landed: these restart: {listed(runs)}"
                       for archive, runs in state.get("lost", {}).items())
    big = [f"Figure {f}: {c['too_large']} cells" + (f", {c['hours_too_large']:.1f} h" if "hours_too_large" in c else "")
           for f, c in state["figures"].items() if c.get("too_large")]
    if big:
        carried += ("\nMissing and too large to carry, so trained only where a run can finish (a shard of its own "
                    "within a lease, or a longer-lived machine): " + ", ".join(big))
    wide = [f"{r} ({c['bytes'] / 2**20:.1f} MB, {c['seconds_alone'] / 3600:.2f} h alone)"
            for r, c in (state.get("uncarried") or {}).items()]
    if wide:
        carried += ("\nToo large to carry, trained only by a shard they finish in (one of their own, without "
                    "--fill, or a longer-lived machine): " + ", ".join(wide))
    return ("\n".join(lines) + "\n\nHours predicted, each run alone to the cap. missing: every missing cell (an "
            "upper bound);\nnext: the width search's next cells, which it cannot skip (runs in progress included)."
            f"\nGPU-hours spent on landed cells: {state['gpu_hours']:.2f}" + carried)


def land(files: list[Path], path: Path = PAPER_CELLS) -> list[str]:
    """Add every record of the shard `files` to the landed cells (`path`), each checked first: a
    damaged shard lands nothing. A record already there is not added again; a cell trained again
    lands beside its first record, so that the report shows the spread. A shard file written
    part-way (`partial`: the machine was taken back before the shard ended) lands like a whole one,
    and a later copy of it (whole, or written later: more runs, or a later carry archive) replaces
    it. Returns the run ids added."""
    cells, known = landed_file(path)
    before = {(r["run"], r["shard"]) for r in cells}
    records, shards = [], {}
    sources: dict[str, tuple[Path, int]] = {}  # carry archive -> (its first part beside its shard file, parts)
    for file in files:
        shard = read(file)
        if not isinstance(shard, dict) or not isinstance(shard.get("runs"), list):
            raise CorruptFile(f"{file}: not a shard file (expected {{\"runs\": [...]}})")
        if not isinstance(shard.get("carried") or {}, (dict, list)):
            raise CorruptFile(f"{file}: carried: not a mapping of run ids to the steps they had done")
        crashed = shard.get("crashed") or {}
        if not isinstance(crashed, dict) or not all(isinstance(v, str) for v in crashed.values()):
            raise CorruptFile(f"{file}: crashed: not a mapping of run ids to why they failed")
        gpus = shard.get("gpus")
        if gpus is not None and (not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0):
            raise CorruptFile(f"{file}: gpus: not a count of GPUs, got {gpus!r}")
        device = shard.get("device") or next((r.get("device") for r in shard["runs"] if isinstance(r, dict)), None)
        entry = {"seconds": shard.get("seconds"), "device": device, **({"gpus": gpus} if gpus else {}),
                 "carried": dict(sorted(carried_steps(shard).items())), "carry": shard.get("carry"),
                 "crashed": dict(sorted(crashed.items())), **({"partial": True} if shard.get("partial") else {})}
        # each record keeps its shard and the shard's wall seconds: its cells shared the GPU
        runs = [{**check(r, Landed, f"{file}: runs[{i}]"), "shard": file.name,
                 "shard_seconds": shard.get("seconds")} for i, r in enumerate(shard["runs"])]
        earlier = known.get(file.name) or shards.get(file.name)
        if earlier is not None and earlier.get("partial"):  # a copy part-way, landed: this one replaces it
            if entry.get("partial") and (entry["seconds"] or 0) <= (earlier.get("seconds") or 0):
                continue  # the same copy again, or an older one
            cells = [r for r in cells if r["shard"] != file.name]
            records = [r for r in records if r["shard"] != file.name]
            known.pop(file.name, None)
        elif earlier is not None and entry.get("partial"):
            continue  # a copy part-way of a shard landed whole: nothing new
        shards[file.name] = entry
        records += runs
        if entry["carry"]:
            sources[entry["carry"]] = (file.parent / entry["carry"], shard.get("carry_parts") or 0)
    added = [r for r in records if r not in cells and not cells.append(r)]
    if added or set(shards) - set(known):
        cells.sort(key=lambda r: r["run"])  # stable: a cell's records keep their landing order
        write_json(path, {"cells": cells, "shards": {**shards, **known}}, indent=1)  # indent 1: a smaller file
    keep_carry(sources, {**known, **shards}, first_records(cells), carry_of(path))
    return [r["run"] for r in added if (r["run"], r["shard"]) not in before]


def cell_of(run: Run) -> tuple[str, str, int, int]:
    """A run's cell in the figures: (task, attention, n, width)."""
    return task_of(run.dataset), run.attention, int(run.dataset.rsplit("_n", 1)[1]), run.width


def cell_states(params_path: Path, records: list[dict]) -> dict[tuple, str]:
    """(task, attention, n, width) -> status (`cell_status`) of every cell of the profile, given the
    landed `records` (`all_landed`), for the figures."""
    train: TrainParams = load_section(params_path, "train")
    first = first_records(records)
    return {cell_of(r): cell_status(r, train.widths, first) for r in train.runs}


def cells_training(params_path: Path, records: list[dict], shards: dict[str, dict],
                   folder: Path = PAPER_CELLS) -> dict[tuple, str]:
    """(task, attention, n, width) -> how far its run got ("47k of 64k steps", on two lines) for every
    run in progress (`in_progress`) whose archive is landed beside `folder`, for the figures."""
    train: TrainParams = load_section(params_path, "train")
    carried = {i: n for runs in in_progress(shards, first_records(records), carry_of(folder)).values()
               for i, n in runs.items()}
    return {cell_of(r): "carried" if carried[r.id] is None else
            f"{carried[r.id] / 1000:g}k of\n{train.max_steps / 1000:g}k steps" for r in train.runs if r.id in carried}
