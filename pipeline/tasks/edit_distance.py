"""Edit distance (ED) and its banded variant with locality (ED_Local).

Format (CoT_benchmark): `a b c | d e f g <sep>` then the DP table row by row (rows i = 1..len(first),
each row's values then `,`), then `<sep>` and the answer. Costs: insert/delete 2, substitute 3, but
the table starts from dp(i,0) = i and dp(0,j) = j, as the public code does.

ED_Local is our construction (the paper's was not available): only cells with |i - j| <= band are
written and used, cells outside the band are unreachable, so every value depends on values a fixed
number of tokens back.
"""

from __future__ import annotations

import random
import string

import numpy as np

from .base import EOS, PAD, Batch, ChainError, Task, TaskError, Vocab, below, number_tokens

LETTERS = string.ascii_lowercase
SPECIALS = (PAD, "<sep>", EOS, "|", ",")
LETTER0 = len(SPECIALS)  # id of "a"
NUMBER0 = LETTER0 + len(LETTERS)  # id of "0"
INF = 10_000  # an unreachable cell; fits int16 with room for the +2/+3 steps
PAD_LETTER = -1
SUB_BATCH = 32768
RANDOM_BRANCH = 0.4  # share of second strings drawn at random instead of by edits


def pick_letters(available: np.ndarray, index: np.ndarray) -> np.ndarray:
    """available[r, index[r, ...]] for every row r, by one flat gather (faster than take_along_axis)."""
    base = np.arange(0, available.size, available.shape[1])
    base = base.reshape((-1,) + (1,) * (index.ndim - 1))
    return available.ravel()[index + base]


class EditDistance(Task):
    name = "ed"
    min_n = 4
    max_n = 200

    def __init__(self, n: int, using: int = 8) -> None:
        super().__init__(n)
        if isinstance(using, bool) or not isinstance(using, int) or not 1 <= using <= len(LETTERS) - 2:
            raise TaskError(f"using={using!r} must be an integer in 1..24 (letters per sample: 3..using+2)")
        self.using = using

    # --- shape of the problem ----------------------------------------------------------------
    def second_lengths(self) -> tuple[int, int]:
        """Inclusive range of the second string's length before the swap."""
        return self.n - 3, self.n + 2

    def band(self) -> int | None:
        return None

    def shapes(self) -> list[tuple[int, int]]:
        """Every (len(first), len(second)) a sample can have after the shorter string is put first."""
        lo, hi = self.second_lengths()
        return [(min(self.n, m), max(self.n, m)) for m in range(lo, hi + 1)]

    def cells(self, a: int, b: int) -> list[list[int]]:
        """For each row i = 1..a, the columns j written in the chain."""
        w = self.band()
        if w is None:
            return [list(range(1, b + 1)) for _ in range(a)]
        return [list(range(max(1, i - w), min(b, i + w) + 1)) for i in range(1, a + 1)]

    def seq_len(self, a: int, b: int) -> int:
        """Tokens of a sample of shape (a, b), <eos> included."""
        return a + 1 + b + 1 + sum(len(c) + 1 for c in self.cells(a, b)) + 3

    # --- description -------------------------------------------------------------------------
    def options(self) -> dict:
        return {"using": self.using}

    @property
    def max_value(self) -> int:
        # dp(i,j) <= 3 min(i,j) + 2 |i-j| (diagonal from dp(0,0) = 0, then straight): <= a + 2b.
        return max(a + 2 * b for a, b in self.shapes())

    @property
    def vocab(self) -> Vocab:
        return Vocab(SPECIALS + tuple(LETTERS) + tuple(number_tokens(self.max_value + 1)))

    @property
    def max_len(self) -> int:
        return max(self.seq_len(a, b) for a, b in self.shapes())

    def min_distinct(self) -> int:
        # Any pair of different strings of length n over one fixed set of (using + 2) letters can
        # be drawn (random branch, second length n), and equal lengths are never swapped.
        k = (self.using + 2) ** self.n
        return k * (k - 1)

    # --- plain solver and checker ------------------------------------------------------------
    def table(self, first: list[str], second: list[str]) -> list[list[int]]:
        """The full DP table by the textbook double loop (INF outside the band)."""
        w = self.band()
        a, b = len(first), len(second)

        def inside(i: int, j: int) -> bool:
            return w is None or abs(i - j) <= w

        dp = [[INF] * (b + 1) for _ in range(a + 1)]
        for i in range(a + 1):
            for j in range(b + 1):
                if not inside(i, j):
                    continue
                if i == 0 or j == 0:
                    dp[i][j] = i + j
                    continue
                sub = 0 if first[i - 1] == second[j - 1] else 3
                dp[i][j] = min(dp[i - 1][j] + 2, dp[i][j - 1] + 2, dp[i - 1][j - 1] + sub)
        return dp

    def solve(self, problem: tuple[list[str], list[str]]) -> list[str]:
        first, second = problem
        dp = self.table(first, second)
        out = [*first, "|", *second, "<sep>"]
        for i, cols in enumerate(self.cells(len(first), len(second)), start=1):
            out += [str(dp[i][j]) for j in cols] + [","]
        return out + ["<sep>", str(dp[len(first)][len(second)])]

    def parse(self, tokens: list[str]) -> tuple[list[str], list[str]]:
        if "|" not in tokens or "<sep>" not in tokens:
            raise ChainError("an ED sample needs '|' and '<sep>'")
        bar, sep = tokens.index("|"), tokens.index("<sep>")
        first, second = tokens[:bar], tokens[bar + 1 : sep]
        if bar > sep or not all(t in LETTERS for t in first + second):
            raise ChainError("the prompt must be letters '|' letters '<sep>'")
        if (len(first), len(second)) not in self.shapes():
            raise ChainError(f"strings of lengths {len(first)} and {len(second)} do not fit n={self.n}")
        expected = self.solve((first, second))
        if len(tokens) != len(expected):
            raise ChainError(f"sequence has {len(tokens)} tokens, the chain needs {len(expected)}")
        for pos, (got, want) in enumerate(zip(tokens, expected)):
            if got != want:
                raise ChainError(f"token {pos}: expected {want!r}, got {got!r}")
        return first, second

    # --- plain-Python sampler (reference and benchmark baseline) ------------------------------
    def reference_sample(self, rng: random.Random, split: str = "test") -> list[str]:
        return self.solve(self.reference_problem(rng))

    def reference_problem(self, rng: random.Random) -> tuple[list[str], list[str]]:
        n, (lo, hi) = self.n, self.second_lengths()
        edits = rng.randrange(n) + 1  # kept when the draw below is rejected, as in the public code
        while True:
            available = rng.sample(LETTERS, rng.randrange(self.using) + 3)
            first = [rng.choice(available) for _ in range(n)]
            if rng.random() < RANDOM_BRANCH:
                second = [rng.choice(available) for _ in range(rng.randint(lo, hi))]
            else:
                second = first[:]
                for _ in range(edits):
                    op = rng.randrange(3)
                    if op == 0 and len(second) > 2:
                        del second[rng.randrange(len(second))]
                    elif op == 1:
                        second[rng.randrange(len(second))] = rng.choice(available)
                    else:
                        second.insert(rng.randrange(len(second) + 1), rng.choice(available))
            if second != first and lo <= len(second) <= hi:
                break
        return (second, first) if len(first) > len(second) else (first, second)

    # --- vectorised sampler ------------------------------------------------------------------
    def generate(self, rng: np.random.Generator, count: int, split: str = "test") -> Batch:
        first_len = self.n
        edits = rng.integers(1, self.n + 1, size=count)
        s1, s2, len2 = self._draw_strings(rng, edits)
        width = self.max_len
        tokens = np.zeros((count, width), dtype=self.vocab.dtype)
        lengths = np.empty(count, dtype=np.int32)
        prompts = np.empty(count, dtype=np.int32)
        for m in np.unique(len2):
            rows = np.flatnonzero(len2 == m)
            if m < first_len:  # the second string is shorter: it goes first
                x, y = s2[rows, :m], s1[rows]
            else:
                x, y = s1[rows], s2[rows, :m]
            block = self._layout(x, y)
            tokens[rows, : block.shape[1]] = block
            lengths[rows] = block.shape[1]
            prompts[rows] = x.shape[1] + y.shape[1] + 2
        return Batch(tokens, lengths, prompts)

    def _draw_strings(self, rng: np.random.Generator, edits: np.ndarray):
        """First strings (B, n), second strings (B, W) padded with -1, and second lengths.

        The public code redraws a sample whose second string has a length out of range or equals
        the first. The length depends only on the branch and the edit operations, not on letters or
        positions, so those are drawn and filtered first (`_draw_shapes`) and the letters only for
        samples whose length is right; a rare string equal to the first is redrawn whole. Both are
        rejection sampling of the same joint draw, so the distribution is the public code's.
        """
        n, hi = self.n, self.second_lengths()[1]
        count = len(edits)
        random_branch, rand_len, ops = self._draw_shapes(rng, edits)
        using = rng.integers(3, self.using + 3, size=(count, 1))
        available = self._letter_sets(rng, count)  # the first `using` columns are this sample's letters
        picks = pick_letters(available, below(rng, using, (count, n + hi)))
        s1 = np.ascontiguousarray(picks[:, :n])
        width = max(2 * n + 1, hi + 1)
        s2 = np.full((count, width), PAD_LETTER, dtype=np.int8)
        s2[:, :n] = s1
        len2 = np.full(count, n, dtype=np.int64)

        rand_str = picks[:, n:]
        rand_str[np.arange(hi) >= rand_len[:, None]] = PAD_LETTER
        s2[random_branch, :hi] = rand_str[random_branch]
        s2[random_branch, hi:] = PAD_LETTER
        len2[random_branch] = rand_len[random_branch]

        # Edits one step at a time over the batch; rows sorted by edit count, so the rows still
        # editing at step t are a prefix and every step works on a view.
        steps = np.where(random_branch, 0, edits)
        order = np.argsort(-steps, kind="stable")
        s2, len2, av, us, ops = s2[order], len2[order], available[order], using[order], ops[order]
        cols = np.arange(width)
        at_or_after = (cols[None, :] >= np.arange(width + 1)[:, None]).view(np.int8)
        after = (cols[None, :] > np.arange(width + 1)[:, None]).view(np.int8)
        for t in range(int(steps.max(initial=0))):
            m = int(np.searchsorted(-steps[order], -t, side="left"))  # rows with steps > t
            self._edit_step(rng, ops[:m, t], s2[:m], len2[:m], av[:m], us[:m], at_or_after, after)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(count)
        s2, len2 = s2[inverse], len2[inverse]

        same = np.flatnonzero((len2 == n) & np.all(s2[:, :n] == s1, axis=1))
        if len(same):
            s1[same], s2[same], len2[same] = self._draw_strings(rng, edits[same])
        return s1, s2, len2

    def _draw_shapes(self, rng: np.random.Generator, edits: np.ndarray):
        """Branch, random length and edit operations (B, n) of every sample, redrawn until the
        second string's length is in range."""
        n, (lo, hi) = self.n, self.second_lengths()
        count = len(edits)
        random_branch = rng.random(count) < RANDOM_BRANCH
        rand_len = rng.integers(lo, hi + 1, size=count)
        ops = rng.integers(0, 3, size=(count, n), dtype=np.int8)
        length = np.full(count, n)
        for t in range(n):
            op = ops[:, t]
            delete = (op == 0) & (length > 2)
            insert = ~delete & (op != 1)
            length += (insert.astype(np.int64) - delete) * (t < edits)
        bad = np.flatnonzero(~random_branch & ((length < lo) | (length > hi)))
        if len(bad):
            random_branch[bad], rand_len[bad], ops[bad] = self._draw_shapes(rng, edits[bad])
        return random_branch, rand_len, ops

    def _letter_sets(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """Per row, a uniformly random ordered choice of distinct letters in the first
        `using + 2` columns: a Fisher-Yates shuffle stopped after those columns."""
        letters = np.tile(np.arange(len(LETTERS), dtype=np.int8), (count, 1))
        rows = np.arange(count)
        for k in range(self.using + 2):
            j = k + below(rng, len(LETTERS) - k, count)
            picked = letters[rows, j]
            letters[rows, j] = letters[:, k]
            letters[:, k] = picked
        return letters

    @staticmethod
    def _edit_step(rng, op, s2, len2, available, using, at_or_after, after) -> None:
        """One random delete / substitute / insert on every row, in place.

        at_or_after[p] (after[p]) is the int8 mask of columns >= p (> p); row W masks nothing.
        """
        delete = (op == 0) & (len2 > 2)
        substitute = op == 1
        insert = ~delete & ~substitute  # includes a delete asked of a string of length <= 2
        pos = below(rng, len2 + insert)
        letter = pick_letters(available, below(rng, using[:, 0]))
        # Shift by masks and int8 arithmetic (SIMD) rather than a gather: cells at or after a
        # deletion take their right neighbour, cells after an insertion their left neighbour.
        none = s2.shape[1]  # the row of the step tables that shifts nothing
        up = np.empty_like(s2)
        up[:, :-1] = s2[:, 1:]
        up[:, -1] = PAD_LETTER
        down = np.empty_like(s2)
        down[:, 1:] = s2[:, :-1]
        down[:, 0] = PAD_LETTER
        shift_up = at_or_after[np.where(delete, pos, none)]
        shift_down = after[np.where(insert, pos, none)]
        up -= s2
        down -= s2
        up *= shift_up
        down *= shift_down
        s2 += up
        s2 += down
        put = np.flatnonzero(~delete)
        s2[put, pos[put]] = letter[put]
        len2 += insert.astype(len2.dtype) - delete

    def _layout(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Token ids of samples that all have the shape (a, b) = (x.shape[1], y.shape[1])."""
        g, a = x.shape
        b = y.shape[1]
        voc = self.vocab
        out = np.empty((g, self.seq_len(a, b)), dtype=voc.dtype)
        out[:, :a] = x + LETTER0
        out[:, a] = voc.id("|")
        out[:, a + 1 : a + 1 + b] = y + LETTER0
        start = a + b + 2
        out[:, start - 1] = voc.id("<sep>")
        row_len = [len(c) + 1 for c in self.cells(a, b)]
        end = start + sum(row_len)
        out[:, end : end + 3] = [voc.id("<sep>"), 0, voc.id(EOS)]
        commas = start + np.cumsum(row_len) - 1
        out[:, commas] = voc.id(",")
        self._write_chain(x, y, out[:, start:end], commas - start)
        out[:, end + 1] = out[:, end - 2]  # the answer is the last cell
        return out

    def _write_chain(self, x: np.ndarray, y: np.ndarray, chain: np.ndarray, commas: np.ndarray) -> None:
        """Fill the DP cells of `chain` (G, cells + commas): here the whole table, row by row."""
        g, a = x.shape
        b = y.shape[1]
        dp = chain.reshape(g, a, b + 1)[:, :, :b]
        for lo in range(0, g, SUB_BATCH):  # sub-batches keep the DP rows in cache
            hi = min(g, lo + SUB_BATCH)
            self._table_rows(x[lo:hi], y[lo:hi], dp[lo:hi])

    @staticmethod
    def _table_rows(x: np.ndarray, y: np.ndarray, dest: np.ndarray) -> None:
        """Write token ids of dp(i, j), i = 1..a, j = 1..b into dest (G, a, b).

        Each row is one vectorised step: t[j] = min(up + 2, diagonal + cost) leaves only the
        left-neighbour term, and dp[i][j] = min_k (t[k] + 2 (j - k)) = 2j + running min of
        (t[k] - 2k). The batch is the last axis, so every operation runs over contiguous memory
        (numpy's minimum.accumulate is slower here than a loop over columns).
        """
        g, a = x.shape
        b = y.shape[1]
        j = np.arange(b + 1, dtype=np.int16)[:, None]
        xt, yt = np.ascontiguousarray(x.T), np.ascontiguousarray(y.T)
        cost = np.empty((b, g), dtype=np.int16)
        prev = np.broadcast_to(j, (b + 1, g)).astype(np.int16)
        t = np.empty((b + 1, g), dtype=np.int16)
        rows = np.empty((a, b, g), dtype=dest.dtype)
        for i in range(1, a + 1):
            t[0] = i
            np.not_equal(xt[i - 1], yt, out=cost, casting="unsafe")
            cost *= 3
            np.add(prev[:-1], cost, out=t[1:])
            np.minimum(t[1:], prev[1:] + 2, out=t[1:])
            t -= 2 * j
            for k in range(1, b + 1):  # running minimum down the columns
                np.minimum(t[k - 1], t[k], out=t[k])
            t += 2 * j
            np.add(t[1:], NUMBER0, out=rows[i - 1], casting="unsafe")
            prev, t = t, prev
        dest[...] = rows.transpose(2, 0, 1)


class EditDistanceLocal(EditDistance):
    """ED restricted to the band |i - j| <= band: DP with locality (our construction)."""

    name = "ed_local"
    min_n = 3

    def __init__(self, n: int, using: int = 8, band: int = 2) -> None:
        if isinstance(band, bool) or not isinstance(band, int) or band < 1:
            raise TaskError(f"band={band!r} must be a positive integer")
        if isinstance(n, int) and not isinstance(n, bool) and n <= band:
            raise TaskError(f"n={n} is out of range for task ed_local with band={band} (n > band)")
        self._band = band
        super().__init__(n, using)

    def band(self) -> int:
        return self._band

    def second_lengths(self) -> tuple[int, int]:
        return self.n - self._band, self.n + self._band

    def options(self) -> dict:
        return {"using": self.using, "band": self._band}

    def _write_chain(self, x: np.ndarray, y: np.ndarray, chain: np.ndarray, commas: np.ndarray) -> None:
        """Fill the band cells of `chain`, working in band coordinates: cell (i, j) is column
        k = j - i + band of row i, so a row is 2 band + 1 values whatever the string lengths.

        Up (i-1, j) is column k+1 of the previous row, the diagonal (i-1, j-1) column k, the left
        neighbour (i, j-1) column k-1 of this row; columns with j < 0 or j > b are unreachable.
        """
        g, a = x.shape
        b, w = y.shape[1], self._band
        width = 2 * w + 1
        k = np.arange(width)
        # y shifted so that column k of row i reads y[j - 1] = y[i - 1 + k - w]; -2 matches nothing
        y_band = np.full((g, a + width), -2, dtype=np.int8)
        y_band[:, w : w + b] = y
        prev = np.where((k >= w) & (k - w <= b), k - w, INF).astype(np.int16)[None, :].repeat(g, 0)
        cell_cols = np.setdiff1d(np.arange(chain.shape[1]), commas)
        values = np.empty((g, len(cell_cols)), dtype=np.int16)
        done = 0
        for i in range(1, a + 1):
            j = i + k - w
            cost = (x[:, i - 1 : i] != y_band[:, i - 1 : i - 1 + width]).astype(np.int16)
            cost *= 3
            row = prev + cost  # diagonal
            np.minimum(row[:, :-1], prev[:, 1:] + 2, out=row[:, :-1])  # up
            if 0 <= w - i:
                row[:, w - i] = i  # the border dp(i, 0) = i inside the band
            row[:, (j < 0) | (j > b)] = INF
            for c in range(1, width):  # left neighbour: a running minimum with +2 per step
                np.minimum(row[:, c], row[:, c - 1] + 2, out=row[:, c])
            row[:, j > b] = INF
            keep = (j >= 1) & (j <= b)
            values[:, done : done + keep.sum()] = row[:, keep]
            done += keep.sum()
            prev = row
        chain[:, cell_cols] = values + NUMBER0
