"""The one interface every DP task implements, and the pieces all tasks share.

A task object is bound to one problem size `n` and its options. It knows its vocabulary, the longest
sequence it can emit, how to draw a batch of samples with numpy (vectorised: the hot path), how to draw
one sample in plain Python (the slow reference and benchmark baseline), and how to read a token
sequence back and check every step of its chain of thought.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property

import numpy as np

PAD = "<pad>"
EOS = "<eos>"


class TaskError(ValueError):
    """A task was asked for something it cannot do (bad n, bad option)."""


class ChainError(ValueError):
    """A token sequence is not a correct sample of its task."""


@dataclass(frozen=True)
class Vocab:
    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(set(self.tokens)) != len(self.tokens):
            raise TaskError("vocabulary has duplicate tokens")
        if self.tokens[0] != PAD:
            raise TaskError("<pad> must be token 0")

    @cached_property
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def id(self, token: str) -> int:
        try:
            return self.index[token]
        except KeyError:
            raise ChainError(f"token {token!r} is not in the vocabulary") from None

    def encode(self, tokens: list[str]) -> np.ndarray:
        return np.array([self.id(t) for t in tokens], dtype=np.int64)

    def decode(self, ids) -> list[str]:
        return [self.tokens[int(i)] for i in ids]

    @property
    def dtype(self) -> np.dtype:
        """The smallest unsigned type that holds every id: keeps dataset files compact."""
        return np.dtype(np.uint8) if len(self) <= 256 else np.dtype(np.uint16)


@dataclass
class Batch:
    """Samples as token ids: `tokens[i, :lengths[i]]` is sample i, ending with <eos>, padded with 0."""

    tokens: np.ndarray  # (B, W)
    lengths: np.ndarray  # (B,) int32
    prompt_lengths: np.ndarray  # (B,) tokens up to and including the first separator

    def __len__(self) -> int:
        return len(self.lengths)

    def take(self, rows: np.ndarray) -> Batch:
        return Batch(self.tokens[rows], self.lengths[rows], self.prompt_lengths[rows])


class Task(ABC):
    """One DP task at one size n. Subclasses set `name`, `separator` and implement the methods."""

    name: str = ""
    separator: str = "<sep>"  # the token that ends the prompt
    unique_chain: bool = True  # False where many chains are right (arithmetic): only answers graded
    min_n: int = 1
    max_n: int = 1000

    def __init__(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int):
            raise TaskError(f"n must be an integer, got {n!r}")
        if not self.min_n <= n <= self.max_n:
            raise TaskError(f"n={n} is out of range for task {self.name} ({self.min_n}..{self.max_n})")
        self.n = n

    # --- description -------------------------------------------------------------------------
    @property
    @abstractmethod
    def vocab(self) -> Vocab: ...

    @property
    @abstractmethod
    def max_len(self) -> int:
        """Longest possible sequence for this n, <eos> included."""

    def options(self) -> dict:
        """Task options besides n, as recorded in meta.json."""
        return {}

    @abstractmethod
    def min_distinct(self) -> int:
        """A proven lower bound on the number of distinct prompts (exact where it is small)."""

    # --- generation --------------------------------------------------------------------------
    @abstractmethod
    def generate(self, rng: np.random.Generator, count: int, split: str = "test") -> Batch:
        """Draw `count` samples (not deduplicated) with numpy, vectorised over the batch."""

    @abstractmethod
    def reference_sample(self, rng: random.Random, split: str = "test") -> list[str]:
        """Draw one sample in plain Python: same distribution as `generate`, token strings, no <eos>."""

    # --- solving and checking ----------------------------------------------------------------
    @abstractmethod
    def solve(self, problem) -> list[str]:
        """The whole sequence (prompt, chain, answer; no <eos>) for a problem, by a plain solver."""

    @abstractmethod
    def parse(self, tokens: list[str]):
        """Read a whole sequence back into its problem; raise ChainError unless every step is right."""

    def prompt(self, tokens: list[str]) -> list[str]:
        """The tokens up to and including the first separator."""
        if self.separator not in tokens:
            raise ChainError(f"no {self.separator} in sequence")
        return tokens[: tokens.index(self.separator) + 1]

    def answer(self, tokens: list[str]) -> str:
        return tokens[-1]

    def check(self, tokens: list[str]) -> None:
        """Raise ChainError unless `tokens` (no <eos>) is a correct sample of this task."""
        if len(tokens) + 1 > self.max_len:
            raise ChainError(f"sequence of {len(tokens) + 1} tokens exceeds max_len {self.max_len}")
        for t in tokens:
            self.vocab.id(t)
        self.parse(tokens)

    def decode_batch(self, batch: Batch) -> list[list[str]]:
        """Token strings of every sample, <eos> dropped."""
        return [self.vocab.decode(row[: length - 1]) for row, length in zip(batch.tokens, batch.lengths)]

    def encode_batch(self, sequences: list[list[str]]) -> Batch:
        """Token strings (no <eos>) to a padded Batch."""
        width = max(len(s) for s in sequences) + 1
        tokens = np.zeros((len(sequences), width), dtype=self.vocab.dtype)
        lengths = np.empty(len(sequences), dtype=np.int32)
        prompts = np.empty(len(sequences), dtype=np.int32)
        eos = self.vocab.id(EOS)
        for i, seq in enumerate(sequences):
            tokens[i, : len(seq)] = self.vocab.encode(seq)
            tokens[i, len(seq)] = eos
            lengths[i] = len(seq) + 1
            prompts[i] = len(self.prompt(seq))
        return Batch(tokens, lengths, prompts)


def number_tokens(count: int) -> list[str]:
    return [str(i) for i in range(count)]


def below(rng: np.random.Generator, high, shape=None) -> np.ndarray:
    """Uniform integers in [0, high) (high an array or int) by scaling uniform floats.

    Several times faster than `rng.integers` with array bounds; the bias is below 2**-50 for the
    small ranges used here.
    """
    high = np.asarray(high)
    u = rng.random(high.shape if shape is None else shape)
    return (u * high).astype(np.int64)
