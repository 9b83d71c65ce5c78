"""`python -m pipeline gather REV...`: the finished runs of other git revisions (shards of a sweep,
trained on other machines and pushed through git and the DVC remote) copied into runs/, with their
records (runtime/train, and the evaluations: results, runtime/evaluate), so that the next
`dvc repro` reuses them instead of training them again.

A shard is a commit of the same project whose train section trained part of the sweep (say, some
datasets). DVC's file system reads that commit's runs/ from the local cache or, where the cache
lacks them, from the DVC remote. A run is taken only when it is finished (its train.json names the
weights' checksum, checked after copying) and this workspace has no finished run of that name; a
local finished run with another key is kept and reported. Runs are keyed by everything that
decides their weights, so after gathering, the train stage of the whole sweep trains only what no
shard trained, and the evaluate stage re-evaluates only what no shard evaluated.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..data import DataError, sha256
from ..execution.io import check_writable, say, write_text
from ..layout import RECORDS, RUNS
from ..records import TrainRecord, check, load, parse


def gather(revisions: list[str], repo: Path = Path("."), runs: Path = RUNS) -> dict[str, list[str]]:
    """Copy the finished runs of `revisions` that are missing here; what was taken, kept, skipped."""
    from dvc.api import DVCFileSystem

    check_writable(runs)
    done: dict[str, list[str]] = {"taken": [], "kept": [], "already": []}
    for rev in revisions:
        try:
            fs = DVCFileSystem(str(repo), rev=rev)
            names = sorted(Path(p).name for p in fs.ls(str(runs), detail=False))
        except Exception as err:  # an unknown revision, or one without trained runs
            raise DataError(f"gather: revision {rev!r}: cannot read its {runs}/ ({type(err).__name__}: "
                            f"{str(err).strip().splitlines()[0] if str(err).strip() else 'no detail'})") from None
        for name in names:
            theirs_path = f"{runs}/{name}/train.json"
            if not fs.isfile(theirs_path):  # sweep.json, or a run that was not finished there
                continue
            where = f"{rev}:{theirs_path}"
            theirs = check(parse(fs.read_text(theirs_path), where), TrainRecord, where)
            mine = load(runs / name / "train.json", TrainRecord)
            if mine is not None:
                same = mine.get("key") == theirs.get("key")
                done["already" if same else "kept"].append(name)
                if not same:
                    say(f"gather: {name}: kept this workspace's run (another key than {rev}'s; delete "
                        f"{runs / name} to take theirs)")
                continue
            _take(fs, rev, name, theirs, runs)
            done["taken"].append(name)
        say(f"gather: {rev}: {len(done['taken'])} runs taken so far, {len(done['already'])} already here, "
            f"{len(done['kept'])} kept")
    return done


def _take(fs, rev: str, name: str, theirs: dict, runs: Path) -> None:
    """One finished run into runs/<name> (whole or not at all), then its records."""
    with tempfile.TemporaryDirectory(prefix=f".{name}.tmp-", dir=runs) as tmp:
        staged = Path(tmp) / name
        staged.mkdir()
        for file in ("train.json", "model.ckpt"):  # a finished run is these two (the train stage tidies)
            fs.get_file(f"{runs}/{name}/{file}", str(staged / file))
        if sha256(staged / "model.ckpt") != theirs.get("checkpoint_sha256"):
            raise DataError(f"gather: {rev}: {runs}/{name}/model.ckpt does not match the checksum in its "
                            "train.json (nothing of this run was taken)")
        shutil.rmtree(runs / name, ignore_errors=True)  # an unfinished attempt here: the finished run wins
        staged.rename(runs / name)
    for folder in RECORDS:
        path = f"{folder}/{name}.json"
        if fs.isfile(path) and not (folder / f"{name}.json").exists():
            folder.mkdir(parents=True, exist_ok=True)
            write_text(folder / f"{name}.json", fs.read_text(path))
