"""Every task: fixtures of the public code, generated chains against independent slow solvers,
vocabulary and length bounds, and the vectorised sampler against the plain-Python one."""

from __future__ import annotations

import random
from functools import cache

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.generation import generate_splits, read_split
from pipeline.tasks import TASKS, ChainError, TaskError, make_task
from pipeline.tasks.cot_text import read_cot

# Sizes small enough for slow solvers, plus the paper's largest where the check is cheap.
SIZES = {"arithmetic": [1, 2, 3, 6, 16], "ed": [4, 6, 12, 20], "ed_local": [3, 10, 30], "lis": [3, 4, 10, 40, 250]}


# --- independent slow solvers: written from the definitions, sharing nothing with the package ---
def slow_edit_distance(first: str, second: str, band: int | None) -> dict[tuple[int, int], int]:
    @cache
    def d(i: int, j: int) -> float:
        if band is not None and abs(i - j) > band:
            return float("inf")
        if i == 0 or j == 0:
            return i + j  # the public code's border: 1 per character
        same = first[i - 1] == second[j - 1]
        return min(d(i - 1, j) + 2, d(i, j - 1) + 2, d(i - 1, j - 1) + (0 if same else 3))

    return {(i, j): d(i, j) for i in range(len(first) + 1) for j in range(len(second) + 1)}


def slow_lis_ends(xs: list[int]) -> list[int]:
    best = []
    for i, x in enumerate(xs):
        best.append(1 + max([best[k] for k in range(i) if xs[k] < x], default=0))
    return best


def slow_eval(tokens: list[str], p: int) -> int:
    """Recursive descent, modulo p, usual precedence, left to right."""
    pos = 0

    def atom() -> int:
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "(":
            value = expr()
            assert tokens[pos] == ")"
            pos += 1
            return value
        return int(tok)

    def term() -> int:
        nonlocal pos
        value = atom()
        while pos < len(tokens) and tokens[pos] in "*/":
            op = tokens[pos]
            pos += 1
            rhs = atom()
            value = value * rhs % p if op == "*" else value * pow(rhs, p - 2, p) % p
        return value

    def expr() -> int:
        nonlocal pos
        value = term()
        while pos < len(tokens) and tokens[pos] in "+-":
            op = tokens[pos]
            pos += 1
            rhs = term()
            value = (value + rhs) % p if op == "+" else (value - rhs) % p
        return value

    result = expr()
    assert pos == len(tokens)
    return result


def check_independently(task, tokens: list[str]) -> None:
    """The sample's chain and answer agree with the slow solvers above."""
    if task.name in ("ed", "ed_local"):
        bar, sep = tokens.index("|"), tokens.index("<sep>")
        first, second = "".join(tokens[:bar]), "".join(tokens[bar + 1 : sep])
        table = slow_edit_distance(first, second, task.options().get("band"))
        rows = " ".join(tokens[sep + 1 : -2]).split(",")[:-1]
        assert len(rows) == len(first)
        for i, row in enumerate(rows, start=1):
            want = [str(table[i, j]) for j in range(len(second) + 1) if table[i, j] != float("inf") and j > 0]
            assert row.split() == want, (i, row, want)
        assert tokens[-1] == str(table[len(first), len(second)])
    elif task.name == "lis":
        n = task.n
        xs = [int(t) for t in tokens[:n]]
        ends = slow_lis_ends(xs)
        assert tokens[n + 1 : 2 * n + 1] == [str(v) for v in ends]
        assert tokens[-1] == str(max(ends))
    else:
        states = " ".join(tokens).split(" = ")
        p = task.options()["p"]
        values = {slow_eval(s.split(), p) for s in states}
        assert values == {int(tokens[-1])}, "every state of the chain must have the answer's value"
        assert len(states[-1].split()) == 1


def sample_batch(name: str, n: int, seed: int, count: int, split: str = "test"):
    task = make_task(name, n)
    batch = task.generate(np.random.default_rng(seed), count, split)
    return task, batch


@pytest.mark.parametrize("name", sorted(TASKS))
@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_generated_chains_are_correct(name, seed, data):
    n = data.draw(st.sampled_from(SIZES[name]))
    task, batch = sample_batch(name, n, seed, 64, data.draw(st.sampled_from(["train", "test"])))
    assert batch.tokens.shape[1] <= task.max_len
    assert batch.tokens.max() < len(task.vocab)
    eos = task.vocab.id("<eos>")
    for row, length, prompt in zip(batch.tokens, batch.lengths, batch.prompt_lengths):
        assert 0 < length <= task.max_len
        assert row[length - 1] == eos and not row[length:].any() and eos not in row[: length - 1]
        tokens = task.vocab.decode(row[: length - 1])
        assert tokens[prompt - 1] == task.separator and task.separator not in tokens[: prompt - 1]
        task.check(tokens)
        check_independently(task, tokens)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_reference_sampler_is_correct(name):
    py = random.Random(7)
    for n in SIZES[name][:3]:
        task = make_task(name, n)
        for _ in range(100):
            tokens = task.reference_sample(py, "train")
            task.check(tokens)
            check_independently(task, tokens)


def test_max_len_is_reached():
    """The declared maximum is the longest sequence (ED/LIS exactly; arithmetic within its bound)."""
    assert make_task("ed", 20).max_len == 507  # 506 in the paper, plus <eos>
    assert make_task("ed", 6).max_len == 73
    assert make_task("lis", 250).max_len == 504  # x1..xn <sep> dp1..dpn <sep> answer <eos>
    assert make_task("lis", 40).max_len == 84
    for name, n in [("ed", 6), ("ed_local", 10), ("lis", 10)]:
        task, batch = sample_batch(name, n, 1, 20000)
        assert batch.lengths.max() == task.max_len, name


@pytest.mark.parametrize(("name", "n"), [("ed", 6), ("ed_local", 6), ("lis", 10), ("arithmetic", 4)])
def test_vectorised_matches_plain_python_distribution(name, n):
    """Same distribution: compare summary statistics of 20k vectorised and 5k plain samples.

    Differences are judged against their standard error (a z score); with fixed seeds this test is
    deterministic, and a real difference in the generator shows up as z in the tens.
    """
    task, batch = sample_batch(name, n, 3, 20000, "train")
    fast = task.decode_batch(batch)
    py = random.Random(3)
    slow = [task.reference_sample(py, "train") for _ in range(5000)]

    def stats(samples):
        prompts = [task.prompt(s) for s in samples]
        return {
            "length": np.array([len(s) for s in samples], float),
            "prompt": np.array([len(p) for p in prompts], float),
            "answer": np.array([float(s[-1]) for s in samples]),
            "distinct_tokens": np.array([len(set(p)) for p in prompts], float),
        }

    a, b = stats(fast), stats(slow)
    for key in a:
        se = np.sqrt(a[key].var() / len(a[key]) + b[key].var() / len(b[key])) + 1e-12
        z = abs(a[key].mean() - b[key].mean()) / se
        assert z < 5, f"{name} n={n}: {key} means {a[key].mean():.3f} vs {b[key].mean():.3f} (z={z:.1f})"


def test_cot_fixtures_parse_and_agree(fixtures):
    """Every sample the public code wrote parses, and our solver agrees with every chain value."""
    for folder, name, n in [("ed_n6", "ed", 6), ("lis_n40", "lis", 40), ("arithmetic_n6", "arithmetic", 6)]:
        task = make_task(name, n)
        files = read_cot(fixtures / folder)
        assert len(files["chain/train_data.txt"]) == 300 and len(files["chain/test_data.txt"]) == 50
        for tokens in files["chain/train_data.txt"]:
            task.check(tokens)
            check_independently(task, tokens)
        for kind in ("train", "test"):
            decoder = files[f"decoder/{kind}_data.txt"]
            chain = files[f"chain/{kind}_data.txt"]
            for short, full in zip(decoder, chain):
                assert short == task.prompt(full) + [full[-1]]
        for tokens in files["chain/test_data.txt"]:
            if task.unique_chain:
                task.check(tokens)
            else:  # arithmetic: prompt and answer only; our solver must find that answer
                prompt = task.prompt(tokens)
                assert task.solve(prompt[:-1])[-1] == tokens[-1]
                assert slow_eval(prompt[:-1], 11) == int(tokens[-1])


@pytest.mark.parametrize(
    ("name", "tokens", "message"),
    [
        ("ed", "a b c d | a b c e <sep> 0 2 4 6 , 2 0 2 4 , 4 2 0 2 , 6 4 2 3 , <sep> 4", "token"),
        ("ed", "a b c d | a b c e <sep> 0 2 4 6 , 2 0 2 4 , 4 2 0 2 , 6 4 1 3 , <sep> 3", "expected .2., got .1."),
        ("ed", "a b c d | a b c d e f g h <sep> 0 2 4 6 , <sep> 3", "lengths 4 and 8"),
        ("lis", "7 5 6 <sep> 1 1 2 <sep> 3", "expected"),
        ("lis", "7 5 6 <sep> 1 1 2 <sep>", "sequence"),
        ("arithmetic", "1 + 2 * 3 = 9 * 3 = 5", "step"),
        ("arithmetic", "1 + 2 * 3 = 1 + 6 = 8", "step"),
    ],
)
def test_wrong_chains_are_rejected(name, tokens, message):
    n = {"ed": 4, "lis": 3, "arithmetic": 2}[name]
    task = make_task(name, n)
    with pytest.raises(ChainError, match=message):
        task.check(tokens.split())


def test_right_chain_is_accepted():
    make_task("ed", 4).check("a b c d | a b c e <sep> 0 2 4 6 , 2 0 2 4 , 4 2 0 2 , 6 4 2 3 , <sep> 3".split())
    make_task("lis", 3).check("7 5 6 <sep> 1 1 2 <sep> 2".split())
    make_task("arithmetic", 2).check("1 + 2 * 3 = 1 + 6 = 7".split())


@pytest.mark.parametrize(
    ("name", "n", "options", "field"),
    [
        ("nope", 4, {}, "unknown task"),
        ("ed", 3, {}, "n=3"),
        ("ed", "6", {}, "integer"),
        ("ed_local", 2, {"band": 2}, "n=2"),
        ("ed_local", 8, {"band": 0}, "band"),
        ("ed", 6, {"using": 30}, "using"),
        ("lis", 2, {}, "n=2"),
        ("lis", 120, {"number_range": 200}, "number_range"),
        ("arithmetic", 0, {}, "n=0"),
        ("arithmetic", 4, {"p": 12}, "p"),
        ("ed", 6, {"colour": 1}, "colour"),
    ],
)
def test_bad_task_arguments_name_the_problem(name, n, options, field):
    with pytest.raises(TaskError, match=field):
        make_task(name, n, **options)


def test_min_distinct_is_a_lower_bound_for_small_arithmetic():
    """Exact where it is small: n=1 has 473 prompts at p=11, and sampling finds no more."""
    task = make_task("arithmetic", 1)
    assert task.min_distinct() == 473
    batch = task.generate(np.random.default_rng(0), 50000)
    prompts = {tuple(t) for t in task.decode_batch(batch)}
    assert len(prompts) == 473


def operator_counts(task, batch) -> np.ndarray:
    """Operators in each sample's prompt."""
    signs = [task.vocab.id(s) for s in "+-*/"]
    in_prompt = np.arange(batch.tokens.shape[1])[None, :] < batch.prompt_lengths[:, None]
    return (np.isin(batch.tokens, signs) & in_prompt).sum(axis=1)


def test_arithmetic_under_mix_follows_the_public_rule(tmp_path):
    """The public rule: int(k / T * size) draws with k operators (T = n(n + 1) / 2), repeats
    dropped, then n-operator samples until the split is full. At n=6 and 30k training samples the
    one-operator expressions run out (473 prompts for 1428 draws): the shortfall must all go to
    n = 6, so no k < n exceeds its quota (spreading it over every k puts k = 2..5 above theirs)."""
    task = make_task("arithmetic", 6)
    assert task.under_quotas(200_000) == [9523, 19047, 28571, 38095, 47619, 57142]
    assert task.under_quotas(10**6) == [47619, 95238, 142857, 190476, 238095, 285714]
    size = 30_000
    quotas = task.under_quotas(size)
    assert quotas == [1428, 2857, 4285, 5714, 7142, 8571]
    sizes = {"train": size, "val": 500, "test": 2000}
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        generate_splits(task, sizes, 4, tmp_path / folder)
    for name in ("train_tokens.npy", "train_lengths.npy"):  # deterministic for a seed
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    train = read_split(task, tmp_path / "a", "train")
    ops = operator_counts(task, train)
    counts = np.bincount(ops, minlength=7)[1:]
    assert counts.sum() == size and counts[0] <= 473
    assert counts[0] < quotas[0] - 900  # one operator: far fewer distinct prompts than draws
    for k in range(1, 5):  # k = 2..5: at most one sample per quota draw, and few repeats
        assert 0.9 * quotas[k] <= counts[k] <= quotas[k], (k + 1, counts[k], quotas[k])
    assert counts[5] >= quotas[5] + (quotas[0] - counts[0])  # the shortfall went to n operators
    # The full-length fill is spread over the split, not appended at its end.
    tail = ops[-size // 20 :]
    assert (tail == 6).mean() < (ops == 6).mean() + 0.08
    for split in ("val", "test"):
        assert (operator_counts(task, read_split(task, tmp_path / "a", split)) == 6).all()
