"""Dataset files: determinism, disjoint deduplicated splits, checksums, atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline import data, generation
from pipeline.data import DataError, verify
from pipeline.generation import read_split, write_dataset
from pipeline.tasks import make_task

SIZES = {"train": 3000, "val": 200, "test": 300}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    task = make_task("ed", 5)
    write_dataset(task, SIZES, 11, root / "a")
    write_dataset(task, SIZES, 11, root / "b")
    write_dataset(task, SIZES, 12, root / "c")
    return task, root


def test_same_parameters_give_byte_identical_files(two_runs):
    _, root = two_runs
    names = sorted(p.name for p in (root / "a").iterdir())
    assert names == sorted(p.name for p in (root / "b").iterdir())
    assert "meta.json" in names and "train_tokens.npy" in names
    for name in names:
        assert (root / "a" / name).read_bytes() == (root / "b" / name).read_bytes(), name


def test_a_different_seed_gives_different_data(two_runs):
    _, root = two_runs
    for split in data.SPLITS:
        a = np.load(root / "a" / f"{split}_tokens.npy")
        c = np.load(root / "c" / f"{split}_tokens.npy")
        assert a.shape == c.shape and not np.array_equal(a, c)


def test_splits_are_deduplicated_and_disjoint(two_runs):
    task, root = two_runs
    seen: dict[str, set] = {}
    for split in data.SPLITS:
        batch = read_split(task, root / "a", split)
        assert len(batch) == SIZES[split]
        rows = {tuple(s) for s in task.decode_batch(batch)}
        prompts = {tuple(task.prompt(list(s))) for s in rows}
        assert len(rows) == len(prompts) == SIZES[split], f"duplicates in {split}"
        seen[split] = prompts
    assert not seen["train"] & seen["val"]
    assert not seen["train"] & seen["test"]
    assert not seen["val"] & seen["test"]


def test_every_stored_sample_is_correct_and_meta_describes_it(two_runs):
    task, root = two_runs
    meta = json.loads((root / "a" / "meta.json").read_text())
    assert meta["task"] == "ed" and meta["n"] == 5 and meta["seed"] == 11
    assert meta["vocab"] == list(task.vocab.tokens) and meta["max_len"] == task.max_len
    assert {s: v["count"] for s, v in meta["splits"].items()} == SIZES
    assert meta["generator_version"] == generation.GENERATOR_VERSION
    verify(root / "a")
    for split in data.SPLITS:
        batch = read_split(task, root / "a", split)
        assert batch.tokens.dtype == np.uint8 and batch.tokens.shape == (SIZES[split], task.max_len)
        assert meta["splits"][split]["max_length"] == batch.lengths.max()
        for tokens in task.decode_batch(batch)[:500]:
            task.check(tokens)


def test_verify_detects_a_changed_file(tmp_path):
    task = make_task("lis", 5)
    write_dataset(task, {"train": 50, "val": 10, "test": 10}, 0, tmp_path / "d")
    arr = np.load(tmp_path / "d" / "val_tokens.npy")
    arr[0, 0] += 1
    np.save(tmp_path / "d" / "val_tokens.npy", arr)
    with pytest.raises(DataError, match="val_tokens.npy: does not match the sha256"):
        verify(tmp_path / "d")


def test_test_split_does_not_depend_on_train_size(tmp_path):
    task = make_task("lis", 8)
    write_dataset(task, {"train": 100, "val": 50, "test": 50}, 3, tmp_path / "small")
    write_dataset(task, {"train": 400, "val": 50, "test": 50}, 3, tmp_path / "large")
    assert (tmp_path / "small/test_tokens.npy").read_bytes() == (tmp_path / "large/test_tokens.npy").read_bytes()


def test_an_interrupted_run_leaves_nothing_behind(tmp_path, monkeypatch):
    task = make_task("ed", 6)
    write_dataset(task, {"train": 100, "val": 10, "test": 10}, 0, tmp_path / "ds")
    before = {p.name: p.read_bytes() for p in (tmp_path / "ds").iterdir()}

    calls = 0
    real = generation.fill_split

    def interrupted(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 3:  # test and val are written, train is being drawn
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(generation, "fill_split", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(task, {"train": 200, "val": 10, "test": 10}, 1, tmp_path / "ds")
    assert [p.name for p in tmp_path.iterdir()] == ["ds"], "no temporary folder may remain"
    assert {p.name: p.read_bytes() for p in (tmp_path / "ds").iterdir()} == before, "old dataset intact"


def test_too_many_samples_for_a_small_problem(tmp_path):
    task = make_task("arithmetic", 1)  # 473 distinct prompts at p = 11
    with pytest.raises(DataError, match="473"):
        write_dataset(task, {"train": 400, "val": 50, "test": 50}, 0, tmp_path / "x")
    assert not list(tmp_path.iterdir())
    write_dataset(task, {"train": 400, "val": 40, "test": 33}, 0, tmp_path / "x")  # exactly all of them
    rows = set()
    for split in data.SPLITS:
        rows |= {tuple(s) for s in task.decode_batch(read_split(task, tmp_path / "x", split))}
    assert len(rows) == 473


def test_prompt_hash_ignores_everything_after_the_prompt():
    task = make_task("lis", 6)
    batch = task.generate(np.random.default_rng(0), 8)
    changed = batch.take(np.arange(8))
    changed.tokens = changed.tokens.copy()
    changed.tokens[:, 10] = 3  # inside the chain, after the prompt (n + 1 = 7 tokens)
    assert np.array_equal(generation.prompt_hashes(batch), generation.prompt_hashes(changed))
    assert len(set(generation.prompt_hashes(batch).tolist())) == 8
