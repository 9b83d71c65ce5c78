"""The carry archive: the checkpoints of a shard's runs that were cut off, packed so that the next
shard, on another bare machine, resumes them. A lent machine returns a few small files a command, so
the archive is written in parts of 15 MB, each part atomically; its manifest names, per run, the steps
done, the run key, and each shard it trained in. `land` keeps it in reports/paper/carry/.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from .execution.io import say
from .grid import part, parts_of
from .params import Run, load_section
from .provenance import git_rev
from .records import Segment

# What a lent machine returns of one command: 8 files of at most 16 MB, 64 MB together. The carry
# archive is written in parts of CARRY_PART (the first part named as the archive, the others `.1`,
# `.2`, ... after it), CARRY_BYTES together, which leaves room for the shard file and its log. It
# goes back in with the repository, 64 MiB a command with what the machine installs: the rest of
# the repository (about 3 MB) and, with W&B off (WANDB_MODE=disabled), 3.1 MB of wheels fit beside it.
CARRY_PART = 15 * 2**20
CARRY_BYTES = 56 * 2**20
# A carried run's bytes a parameter: last.ckpt's float32 weights and AdamW's two moments (12), and
# best.ckpt's weights alone (4): it is only read for its weights once the run finishes.
CARRIED_BYTES_PER_PARAMETER = 16
CARRIED = ("resume.json", "checkpoints/last.ckpt", "checkpoints/best.ckpt")  # what a run resumes from


def carry_sizes(params_path: Path, train, runs: list[Run]) -> dict[str, int]:
    """Run id -> the bytes its carried checkpoints take (`CARRIED_BYTES_PER_PARAMETER`), for `runs`."""
    import torch

    from .generation import tasks_of
    from .model import DecoderTransformer, ModelConfig

    generate = load_section(params_path, "generate")
    tasks = {d.name: task for d, task in tasks_of(generate, str(params_path))}
    sizes = {}
    for r in runs:
        task = tasks[r.dataset]
        with torch.device("meta"):  # shapes alone: no memory, no time
            model = DecoderTransformer(ModelConfig(
                vocab_size=len(task.vocab.tokens), max_len=task.max_len, width=r.width, layers=train.layers,
                heads=train.heads, attention=r.attention,
                attention_options=train.attention_options.get(r.attention, {})))
        sizes[r.id] = CARRIED_BYTES_PER_PARAMETER * sum(p.numel() for p in model.parameters())
    return sizes


def weights_only(blob: bytes) -> bytes:
    """A Lightning checkpoint's weights, step and hyperparameters alone (`training.KEEP`): what a
    finished run reads of its best checkpoint."""
    import torch

    from .training import KEEP

    full = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=False)  # our own file
    buffer = io.BytesIO()
    torch.save({k: full[k] for k in KEEP if k in full}, buffer)
    return buffer.getvalue()


def pack(ids: list[str], runs: Path, archive: Path, revision: str, limit: int = CARRY_BYTES,
         quiet: bool = False, segments: Callable[[str, int], list[dict]] | None = None) -> tuple[dict[str, int], int]:
    """The checkpoints the runs `ids` resume from, into `archive` with a manifest (steps done, key,
    revision, and `segments(run id, steps done)`: the shards it trained in), as many as fit `limit`
    bytes, in order, written in parts of CARRY_PART, each part atomically and the parts of an earlier
    archive of that name removed; returns ({run id: steps done}, parts written). The runs may be
    training: Lightning replaces a checkpoint atomically, and a run that finishes while it is read (its
    checkpoints removed) is left out. `quiet`: a run left out for the archive's size is not said (a
    snapshot would say it every time)."""
    import torch

    members: list[tuple[str, bytes]] = []
    manifest: dict[str, dict] = {}
    size = 0
    for run_id in ids:
        files = {name: runs / run_id / name for name in CARRIED if (runs / run_id / name).is_file()}
        if "checkpoints/last.ckpt" not in files or "resume.json" not in files:
            continue  # cut off before its first checkpoint: nothing to carry
        try:
            data = {name: f.read_bytes() for name, f in files.items()}
        except FileNotFoundError:
            continue  # it finished while being read: it lands, nothing to carry
        if "checkpoints/best.ckpt" in data:
            data["checkpoints/best.ckpt"] = weights_only(data["checkpoints/best.ckpt"])
        nbytes = sum(map(len, data.values()))
        if size + nbytes > limit:
            if not quiet:
                say(f"shard: {run_id} not carried: its checkpoints would take the archive past "
                    f"{limit >> 20} MB (--carry-mb)")
            continue
        last = torch.load(io.BytesIO(data["checkpoints/last.ckpt"]), map_location="cpu", weights_only=False)
        steps = last["global_step"]
        manifest[run_id] = {"steps": int(steps), "key": json.loads(data["resume.json"])["key"], "git_rev": revision}
        if segments:
            manifest[run_id]["segments"] = segments(run_id, int(steps))
        members += [(f"{run_id}/{name}", blob) for name, blob in data.items()]
        size += nbytes
    chunks = []
    if manifest:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name, blob in [("carry.json", json.dumps(manifest, indent=1).encode()), *members]:
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
        data = buffer.getvalue()
        chunks = [data[i:i + CARRY_PART] for i in range(0, len(data), CARRY_PART)]
    if chunks:
        archive.parent.mkdir(parents=True, exist_ok=True)
    for i, chunk in enumerate(chunks):  # each part whole or not there: a copy never reads half a part
        tmp = archive.with_name(f".{part(archive, i).name}.tmp")
        tmp.write_bytes(chunk)
        tmp.replace(part(archive, i))
    for stale in parts_of(archive)[len(chunks):] if archive.exists() else []:
        stale.unlink()  # an earlier archive's parts past this one's
    return {run_id: m["steps"] for run_id, m in manifest.items()}, len(chunks)


def unpack(archive: Path, known: dict, runs: Path, only: set[str] | None = None) -> dict[str, dict]:
    """A carry archive (its first part; the others are read after it) into `runs`, checked first: only
    the profile's runs and the files a run resumes from; returns {run id: {"steps": steps done,
    "segments": the shards it trained in}}; from an archive that did not record them, one segment
    with the revision that packed it. A run already in `runs` is left as it is, and counts as carried
    where its last checkpoint is the archive's (a second shard on the machine that packed it); `only`:
    these runs alone (the others landed since)."""
    pattern = re.compile(r"([\w.-]+)/(" + "|".join(map(re.escape, CARRIED)) + ")")
    try:
        data = b"".join(p.read_bytes() for p in parts_of(archive))
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = tar.getmembers()
            manifest = json.load(tar.extractfile("carry.json"))
    except (tarfile.TarError, KeyError, json.JSONDecodeError, AttributeError, OSError, EOFError) as err:
        raise ValueError(f"shard --resume-from: {archive}: not a carry archive, or a part of it is missing "
                         f"({err})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"shard --resume-from: {archive}: carry.json is not a mapping of run ids")
    bad = [m.name for m in members if m.name != "carry.json"
           and not (m.isfile() and pattern.fullmatch(m.name) and m.name.split("/")[0] in manifest)]
    bad += [i for i in manifest if i not in known or not isinstance(manifest[i], dict)
            or not isinstance(manifest[i].get("steps"), int) or not recorded(manifest[i].get("segments"))]
    if bad:
        raise ValueError(f"shard --resume-from: {archive}: {bad[0]!r} is not a carried run of this profile")
    out, revisions = {}, set()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for run_id, entry in manifest.items():
            if only is not None and run_id not in only:
                continue
            if not (runs / run_id).exists():
                tar.extractall(runs, members=[m for m in tar.getmembers() if m.name.startswith(run_id + "/")],
                               filter="data")
            elif _same_checkpoint(tar, run_id, runs):
                say(f"shard: {run_id} is already in {runs} as {archive.name} carried it: resumed from there")
            else:
                say(f"shard: {run_id} is already in {runs}: kept as it is, not taken from {archive.name}")
                continue
            past = entry.get("segments") or [{"steps": entry["steps"], "git_rev": entry.get("git_rev"),
                                               "device": None, "compile": None}]
            out[run_id] = {"steps": entry["steps"], "segments": past}
            revisions.add(str(entry.get("git_rev")))
    here = git_rev()
    if revisions - {here}:
        say(f"shard: {len(out)} runs carried from revision {', '.join(sorted(revisions))} (this is {here}): "
            "a run whose training code changed since trains again from the start")
    return out


def _same_checkpoint(tar: tarfile.TarFile, run_id: str, runs: Path) -> bool:
    """Whether the run's last checkpoint in `runs` is, byte for byte, the one the archive holds."""
    name = f"{run_id}/checkpoints/last.ckpt"
    local = runs / name
    try:
        member = tar.getmember(name)
    except KeyError:
        return False
    if not local.is_file() or local.stat().st_size != member.size:
        return False
    with tar.extractfile(member) as packed, local.open("rb") as here:
        while chunk := packed.read(1 << 20):
            if chunk != here.read(len(chunk)):
                return False
    return True


def recorded(segments) -> bool:
    """Whether a carry manifest's `segments` are absent (an older archive) or what `pack` writes."""
    if segments is None:
        return True
    if not isinstance(segments, list):
        return False
    try:
        for segment in segments:
            Segment.model_validate(segment)
    except ValidationError:
        return False
    return True
