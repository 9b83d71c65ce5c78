"""The CoT_benchmark text format: the public code's files read back and written byte for byte."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.tasks import make_task
from pipeline.tasks.cot_text import read_cot, write_cot

FIXTURES = [("ed_n6", "ed", 6), ("lis_n40", "lis", 40), ("arithmetic_n6", "arithmetic", 6)]


@pytest.mark.parametrize(("folder", "name", "n"), FIXTURES)
def test_fixture_round_trip_is_byte_identical(fixtures, tmp_path, folder, name, n):
    task = make_task(name, n)
    files = read_cot(fixtures / folder)
    write_cot(task, tmp_path, {"train": files["chain/train_data.txt"], "test": files["chain/test_data.txt"]})
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.txt"))
    original = sorted(p.relative_to(fixtures / folder) for p in (fixtures / folder).rglob("*.txt"))
    assert written == original
    for rel in original:
        assert (tmp_path / rel).read_bytes() == (fixtures / folder / rel).read_bytes(), rel


@pytest.mark.parametrize("name", ["arithmetic", "ed", "ed_local", "lis"])
def test_generated_samples_round_trip(tmp_path, name):
    task = make_task(name, 5)
    samples = task.decode_batch(task.generate(np.random.default_rng(1), 40))
    write_cot(task, tmp_path, {"train": samples[:30], "test": samples[30:]})
    files = read_cot(tmp_path)
    assert files["chain/train_data.txt"] == samples[:30]
    if task.unique_chain:
        assert files["chain/test_data.txt"] == samples[30:]
    else:
        assert files["chain/test_data.txt"] == [task.prompt(s) + [s[-1]] for s in samples[30:]]
    assert files["decoder/test_data.txt"] == [task.prompt(s) + [s[-1]] for s in samples[30:]]
    encoded = task.encode_batch(files["chain/train_data.txt"])
    assert task.decode_batch(encoded) == samples[:30]
