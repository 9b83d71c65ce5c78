"""Arithmetic: an expression over the numbers modulo a prime p, reduced one operation per step.

Format (CoT_benchmark): `E_n = E_{n-1} = ... = E_0`, where E_n has n operators over 0..p-1 with
+ - * / and brackets, each E_{k-1} is E_k with one operation evaluated (brackets left around a single
number dropped) and E_0 is the answer. Division is modular: a / b = a * b^-1 mod p.

The generator is the public one: start from a uniform number; n times pick a uniformly random number
token and replace it by `num1 sign num2` of the same value (with brackets where the neighbours need
them); the chain is that history read backwards.

With `under`, the training split is filled by the public rule (arithmetic/data.py of CoT_benchmark):
first, for each k = 1..n, int(k / T * size) draws of k-operator samples (T = n(n + 1) / 2), of which
the new prompts are kept; then n-operator samples until the split is full. Short expressions run out
of distinct prompts (473 with one operator at p = 11), so the shortfall goes to full-length samples,
not to every k. Validation and test always use n operators. One draw of `generate` or
`reference_sample` for the train split is one draw of the first phase: k with probability
proportional to k.
"""

from __future__ import annotations

import random
from functools import cached_property

import numpy as np

from .base import EOS, PAD, Batch, ChainError, Task, TaskError, Vocab, number_tokens

SIGNS = "+-*/"
SPECIALS = (PAD, "<cls>", EOS, "+", "-", "*", "/", "(", ")", "=")
SYMBOLS = frozenset(SPECIALS)
NUMBER0 = len(SPECIALS)  # id of "0"
EOS_ID, PLUS, LB, RB, EQ = 2, 3, 7, 8, 9  # ids of <eos>, "+", "(", ")", "="; the signs are PLUS..PLUS+3
MAX_P = 97  # keeps the vectorised sampler's result table (144 p^2 records of 16 bytes) small
CACHE = 2_300_000  # bytes of states per sub-block of the vectorised sampler's second pass

# The tokens that can stand next to a number (for the vectorised sampler's contexts): on its left
# nothing (0), "(" or a sign; on its right "=" (the end of the state), ")" or a sign.
LEFT = (0, LB, PLUS, PLUS + 1, PLUS + 2, PLUS + 3)
RIGHT = (EQ, RB, PLUS, PLUS + 1, PLUS + 2, PLUS + 3)


def is_prime(p: int) -> bool:
    return p >= 2 and all(p % d for d in range(2, int(p**0.5) + 1))


def needs_bracket(before: str | None, after: str | None, sign: str) -> bool:
    """The public rule: does `num1 sign num2` need brackets between these neighbour tokens?"""
    if before == "/":
        return True
    if before == "*" or after in ("*", "/") or before == "-":
        return sign in "+-"
    return False


class Arithmetic(Task):
    name = "arithmetic"
    separator = "="
    min_n = 1
    max_n = 64
    unique_chain = False  # many reduction orders are right: only the answer is graded

    def __init__(self, n: int, p: int = 11, under: bool = True) -> None:
        super().__init__(n)
        if isinstance(p, bool) or not isinstance(p, int) or not is_prime(p) or p > MAX_P:
            raise TaskError(f"p={p!r} must be a prime in 2..{MAX_P} (division needs every inverse)")
        if not isinstance(under, bool):
            raise TaskError(f"under={under!r} must be true or false")
        self.p = p
        self.under = under

    # --- description -------------------------------------------------------------------------
    def options(self) -> dict:
        return {"p": self.p, "under": self.under}

    @cached_property
    def vocab(self) -> Vocab:
        return Vocab(SPECIALS + tuple(number_tokens(self.p)))

    @property
    def max_len(self) -> int:
        # E_k has k operators, k + 1 numbers and at most k - 1 bracket pairs (k >= 1): an expansion
        # adds at most one pair, none are ever removed, and the first expansion has no neighbours so
        # never adds one. So len(E_k) <= 4k - 1, len(E_0) = 1, and the bound is reached: always
        # expanding the last number with "/" gives x / ( x / ( x / ... ) ) with k - 1 pairs in every
        # E_k at once. Sum of 4k - 1 over k = 1..n, plus E_0, the n separators and <eos>:
        return 2 * self.n * (self.n + 1) + 2

    def min_distinct(self) -> int:
        return self._min_distinct

    @cached_property
    def _min_distinct(self) -> int:
        if self.n <= 2:  # exact: every prompt reachable with positive probability
            return len(self._reachable_prompts(self.n))
        # Lower bound: histories that always expand the last number. Reading a prompt left to right
        # without brackets gives num1_1 s_1 num1_2 s_2 ... num1_n s_n v_n (each step replaces the
        # last number v_{i-1} by num1_i s_i v_i); then v_{i-1} = num1_i s_i v_i back to v_0. So the
        # prompt determines the history and distinct histories give distinct prompts. Count them:
        # N_k(v) = sum over the expansions (num1, s, num2) of v of N_{k-1}(num2).
        outcomes = [self._outcomes(x) for x in range(self.p)]
        counts = [1] * self.p
        for _ in range(self.n):
            counts = [sum(counts[num2] for _, _, num2, _ in outcomes[v]) for v in range(self.p)]
        return sum(counts)

    def _reachable_prompts(self, n: int) -> set[tuple[str, ...]]:
        outcomes = [self._outcomes(x) for x in range(self.p)]
        states = {(str(x),) for x in range(self.p)}
        for _ in range(n):
            grown = set()
            for state in states:
                for item, tok in enumerate(state):
                    if tok in SYMBOLS:
                        continue
                    before = state[item - 1] if item > 0 else None
                    after = state[item + 1] if item + 1 < len(state) else None
                    for num1, sign, num2, _ in outcomes[int(tok)]:
                        middle = (str(num1), sign, str(num2))
                        if needs_bracket(before, after, sign):
                            middle = ("(", *middle, ")")
                        grown.add(state[:item] + middle + state[item + 1 :])
            states = grown
        return states

    def _outcomes(self, x: int) -> list[tuple[int, str, int, int]]:
        """Every (num1, sign, num2) the public get_expr(x) can return, with integer weights
        proportional to its probability (one draw of num1 and sign has weight p, and a further
        uniform num2 splits it in p)."""
        p, out = self.p, []
        for num1 in range(p):
            out.append((num1, "+", (x - num1) % p, p))
            out.append((num1, "-", (num1 - x) % p, p))
            if num1:
                out.append((num1, "*", x * pow(num1, -1, p) % p, p))
            elif x == 0:
                out += [(0, "*", num2, 1) for num2 in range(p)]
            if num1 and x:
                out.append((num1, "/", num1 * pow(x, -1, p) % p, p))
            elif num1 == 0 and x == 0:
                out += [(0, "/", num2, 1) for num2 in range(1, p)]
        return out

    # --- plain evaluator, solver and checker ---------------------------------------------------
    def _is_number(self, tok: str) -> bool:
        return tok in self._numbers

    @cached_property
    def _numbers(self) -> frozenset[str]:
        return frozenset(number_tokens(self.p))

    def _apply(self, a: int, sign: str, b: int) -> int | None:
        p = self.p
        if sign == "+":
            return (a + b) % p
        if sign == "-":
            return (a - b) % p
        if sign == "*":
            return a * b % p
        return None if b == 0 else a * pow(b, -1, p) % p

    def evaluate(self, expr: list[str]) -> int:
        """Value of an expression by recursive descent (usual precedence, left to right)."""
        pos = 0

        def fail(why: str):
            raise ChainError(f"{' '.join(expr) or '(empty)'!r} is not a well-formed expression: {why}")

        def atom() -> int:
            nonlocal pos
            if pos == len(expr):
                fail("it ends early")
            tok = expr[pos]
            pos += 1
            if tok == "(":
                value = total()
                if pos == len(expr) or expr[pos] != ")":
                    fail("a bracket is not closed")
                pos += 1
                return value
            if not self._is_number(tok):
                fail(f"{tok!r} where a number belongs")
            return int(tok)

        def product() -> int:
            nonlocal pos
            value = atom()
            while pos < len(expr) and expr[pos] in ("*", "/"):
                sign = expr[pos]
                pos += 1
                value = self._apply(value, sign, atom())
                if value is None:
                    fail("division by zero")
            return value

        def total() -> int:
            nonlocal pos
            value = product()
            while pos < len(expr) and expr[pos] in ("+", "-"):
                sign = expr[pos]
                pos += 1
                value = self._apply(value, sign, product())
            return value

        value = total()
        if pos != len(expr):
            fail(f"unexpected {expr[pos]!r}")
        return value

    def _reduction_ok(self, longer: list[str], shorter: list[str], item: int) -> bool:
        """Is `shorter` the result of evaluating, in `longer`, the operation that becomes the number
        shorter[item]? The value must be right, and re-expanding it by the bracket rule must give
        `longer` back (which rejects reductions that precedence does not allow)."""
        width = len(longer) - len(shorter)
        span = longer[item : item + width + 1]
        if width == 4:
            if span[0] != "(" or span[4] != ")":
                return False
            span = span[1:4]
        elif width != 2:
            return False
        a, sign, b = span
        if sign not in SIGNS or not self._is_number(a) or not self._is_number(b):
            return False
        if not self._is_number(shorter[item]) or self._apply(int(a), sign, int(b)) != int(shorter[item]):
            return False
        before = shorter[item - 1] if item > 0 else None
        after = shorter[item + 1] if item + 1 < len(shorter) else None
        return needs_bracket(before, after, sign) == (width == 4)

    def _step_ok(self, longer: list[str], shorter: list[str]) -> bool:
        if len(longer) - len(shorter) not in (2, 4):
            return False
        same = 0  # length of the common prefix
        while same < len(shorter) and longer[same] == shorter[same]:
            same += 1
        tail = 0  # length of the common suffix
        while tail < len(shorter) and longer[-1 - tail] == shorter[-1 - tail]:
            tail += 1
        first = max(0, len(shorter) - 1 - tail)
        return any(
            self._reduction_ok(longer, shorter, i) for i in range(first, min(same, len(shorter) - 1) + 1)
        )

    def _ready(self, expr: list[str]) -> list[list[str]]:
        """The states reachable by one reduction, leftmost operation first: an operation whose
        operands are numbers and that precedence allows to evaluate now (brackets left around the
        result dropped)."""
        rank = {"+": 1, "-": 1, "*": 2, "/": 2}
        out = []
        for j in range(1, len(expr) - 1):
            sign = expr[j]
            if sign not in rank or not (self._is_number(expr[j - 1]) and self._is_number(expr[j + 1])):
                continue
            left = expr[j - 2] if j >= 2 else None
            right = expr[j + 2] if j + 2 < len(expr) else None
            if (left in rank and rank[left] >= rank[sign]) or (right in rank and rank[right] > rank[sign]):
                continue
            value = self._apply(int(expr[j - 1]), sign, int(expr[j + 1]))
            if value is None:
                continue
            lo, hi = (j - 2, j + 3) if left == "(" and right == ")" else (j - 1, j + 2)
            out.append(expr[:lo] + [str(value)] + expr[hi:])
        return out

    def solve(self, problem: list[str]) -> list[str]:
        expr = list(problem)
        self.evaluate(expr)  # well-formed, no division by zero
        out = list(expr)
        while len(expr) > 1:
            for nxt in self._ready(expr):
                if self._step_ok(expr, nxt):
                    break
            else:
                raise ChainError(f"no operation of {' '.join(expr)!r} reduces as one step of the format")
            expr = nxt
            out += ["=", *expr]
        return out

    def parse(self, tokens: list[str]) -> list[str]:
        states: list[list[str]] = [[]]
        for tok in tokens:
            if tok == "=":
                states.append([])
            else:
                states[-1].append(tok)
        if len(states) < 2:
            raise ChainError("an arithmetic sample needs at least one '='")
        for k, state in enumerate(states):
            try:
                self.evaluate(state)
            except ChainError as err:
                raise ChainError(f"state {k}: {err}") from None
        ops = sum(tok in SIGNS for tok in states[0])
        if not 1 <= ops <= self.n:
            raise ChainError(f"the prompt has {ops} operators, n={self.n} allows 1..{self.n}")
        if len(states) != ops + 1:
            raise ChainError(
                f"the prompt has {ops} operators, so {ops} steps, but the chain has {len(states) - 1}"
            )
        for k in range(ops):
            if not self._step_ok(states[k], states[k + 1]):
                raise ChainError(
                    f"step {k + 1}: {' '.join(states[k + 1])!r} is not {' '.join(states[k])!r} "
                    "with one operation evaluated"
                )
        answer = self.evaluate(states[0])
        if states[-1] != [str(answer)]:
            raise ChainError(f"answer {' '.join(states[-1])!r}, the prompt evaluates to {answer}")
        return states[0]

    # --- plain-Python sampler (reference and benchmark baseline) ------------------------------
    def reference_sample(self, rng: random.Random, split: str = "test") -> list[str]:
        k = self.n
        if self.under and split == "train":
            k = rng.choices(range(1, self.n + 1), weights=range(1, self.n + 1))[0]
        expr = [str(rng.randrange(self.p))]
        history = [expr]
        for _ in range(k):
            item = rng.choice([i for i, tok in enumerate(expr) if tok not in SYMBOLS])
            num1, sign, num2 = self._reference_expansion(rng, int(expr[item]))
            before = expr[item - 1] if item > 0 else None
            after = expr[item + 1] if item + 1 < len(expr) else None
            middle = [str(num1), sign, str(num2)]
            if needs_bracket(before, after, sign):
                middle = ["(", *middle, ")"]
            expr = expr[:item] + middle + expr[item + 1 :]
            history.append(expr)
        out = []
        for state in reversed(history):
            out += state
            out.append("=")
        return out[:-1]

    def _reference_expansion(self, rng: random.Random, x: int) -> tuple[int, str, int]:
        """The public get_expr: `num1 sign num2` with value x, by rejection."""
        p = self.p
        while True:
            num1 = rng.randrange(p)
            sign = rng.choice(SIGNS)
            if sign == "+":
                return num1, sign, (x - num1) % p
            if sign == "-":
                return num1, sign, (num1 - x) % p
            if sign == "*":
                if num1 != 0:
                    return num1, sign, x * pow(num1, -1, p) % p
                if x == 0:
                    return num1, sign, rng.randrange(p)
            elif x == 0 and num1 == 0:
                num2 = rng.randrange(p)
                if num2 != 0:
                    return num1, sign, num2
            elif x != 0 and num1 != 0:
                return num1, sign, num1 * pow(x, -1, p) % p

    # --- vectorised sampler ------------------------------------------------------------------
    def generate(self, rng: np.random.Generator, count: int, split: str = "test") -> Batch:
        if not (self.under and split == "train"):
            return self._generate(rng, count, None)
        # Operator counts k in 1..n with P(k) proportional to k.
        cum = np.cumsum(np.arange(1, self.n + 1))
        ops = np.searchsorted(cum, rng.random(count) * cum[-1], side="right") + 1
        return self._generate(rng, count, ops)

    def _generate(self, rng: np.random.Generator, count: int, ops: np.ndarray | None) -> Batch:
        """`count` samples: ops[i] operators for sample i, or n each where ops is None."""
        tokens = np.zeros((count, self.max_len), dtype=self.vocab.dtype)
        lengths = np.empty(count, dtype=np.int32)
        prompts = np.empty(count, dtype=np.int32)
        if count == 0:
            return Batch(tokens, lengths, prompts)
        work = self._workspace(min(count, 2 * self._chunk))
        block_rows = work.rows
        if ops is None:
            for lo in range(0, count, block_rows):
                hi = min(count, lo + block_rows)
                self._block(rng, work, None, tokens[lo:hi], lengths[lo:hi], prompts[lo:hi])
            return Batch(tokens, lengths, prompts)
        # Rows are processed in order of decreasing k (the rows still expanding at step t are a
        # prefix, and a block of small k works on small states), then put back in place.
        order = np.argsort((self.n - ops).astype(np.int8), kind="stable")  # a radix sort
        block, block_lengths, block_prompts = work.unordered(self.max_len)
        for lo in range(0, count, block_rows):
            rows = order[lo : lo + block_rows]
            m = len(rows)
            block[:m] = 0
            self._block(rng, work, ops[rows], block[:m], block_lengths[:m], block_prompts[:m])
            tokens[rows] = block[:m]
            lengths[rows], prompts[rows] = block_lengths[:m], block_prompts[:m]
        return Batch(tokens, lengths, prompts)

    # --- the training split's mix of operator counts (`under`) ----------------------------------
    def under_quotas(self, size: int) -> list[int]:
        """The public rule's first phase for a training split of `size`: how many k-operator samples
        to draw for k = 1..n, int(k / T * size) with T = n(n + 1) / 2 (in floating point, as the
        public code computes it), before repeated prompts are dropped."""
        total = self.n * (self.n + 1) // 2
        return [int(k / total * size) for k in range(1, self.n + 1)]

    def split_plan(self, rng: np.random.Generator, split: str, size: int) -> list | None:
        """How `generation.fill_split` draws the training split with `under`: the quota draws of
        `under_quotas` (their operator counts shuffled, so that the rows are mixed), then n-operator
        samples until the split is full. None (one stage of `generate`) for the other splits."""
        if not (self.under and split == "train"):
            return None
        ops = rng.permutation(np.repeat(np.arange(1, self.n + 1), self.under_quotas(size)))

        def quota(rng, start, count):
            return self._generate(rng, count, ops[start : start + count])

        def full(rng, start, count):
            return self._generate(rng, count, None)

        return [(len(ops), quota), (None, full)]

    @property
    def _chunk(self) -> int:
        """Rows of a sub-block of the second pass (a block of the first pass has twice as many)."""
        return max(256, min(4096, CACHE // self.max_len))

    def _workspace(self, rows: int) -> _Workspace:
        """Buffers for blocks of up to `rows` rows, kept from call to call (fresh memory is slow)."""
        work = self.__dict__.get("_work")
        if work is None or work.rows < rows:
            work = self.__dict__["_work"] = _Workspace(self.n, rows, self._chunk)
        return work

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_work", None)  # buffers and tables are rebuilt on demand
        state.pop("_tables", None)
        return state

    @cached_property
    def _tables(self) -> dict:
        """Lookup tables of the vectorised sampler.

        A number waiting to be expanded is a slot with a code: its value times q and its context,
        which is what the bracket rule and the window of new tokens need to know of its neighbours:
        the parity of its position; for an even position the class of the token on its left (other,
        -, *, /) and the exact token on its right, for an odd one the exact token on its left and the
        class of the one on its right (* or / against the rest). `out` maps (value, uniform draw) to
        an outcome (num1, sign, num2) with the probabilities of the public get_expr, and a result
        r = outcome * 36 + context indexes `record` (16 bytes): the codes of the two new numbers,
        the window of new tokens as three token pairs, whether it has brackets, and where its first
        number lands.
        """
        p = self.p
        q, z = 4 * p - 2, 3 * p * p + p - 1  # outcome weights of a value x != 0 and of x = 0
        out = np.empty(p * q + z, dtype=np.int32)
        for x in range(p):
            outcomes = self._outcomes(x)
            ids = np.array([(SIGNS.index(s) * p + a) * p + b for a, s, b, _ in outcomes]) * 36
            weights = np.array([w for *_, w in outcomes])
            if x:
                assert len(ids) == q and (weights == p).all()
                out[x * q : (x + 1) * q] = ids
            else:
                assert weights.sum() == z
                out[p * q :] = np.repeat(ids, weights)
        shift = int(p * q - 1).bit_length()
        si, n1, n2, ctx = (a.ravel() for a in np.indices((4, p, p, 36)))
        odd = (ctx >= 24).astype(np.int64)
        # exact neighbour tokens where the context has them, a token of the right class otherwise
        left_class, right = np.divmod(ctx, 6)  # even positions
        left, right_class = np.divmod(ctx - 24, 2)  # odd positions
        left = np.where(
            odd == 1, np.array(LEFT)[left % 6], np.array([0, PLUS + 1, PLUS + 2, PLUS + 3])[left_class % 4]
        )
        right = np.where(odd == 1, np.array([EQ, PLUS + 2])[right_class % 2], np.array(RIGHT)[right % 6])
        sign = PLUS + si
        br = (left == PLUS + 3) | (
            ((left == PLUS + 2) | (right == PLUS + 2) | (right == PLUS + 3) | (left == PLUS + 1)) & (si < 2)
        )
        br = br.astype(np.int64)
        odd1 = odd ^ br

        def context(left, right, odd):
            lc = np.select([left == PLUS + 1, left == PLUS + 2, left == PLUS + 3], [1, 2, 3], 0)
            rc = (right == PLUS + 2) | (right == PLUS + 3)
            return np.where(odd == 1, 24 + _index(LEFT, left) * 2 + rc, lc * 6 + _index(RIGHT, right))

        code1 = context(np.where(br == 1, LB, left), sign, odd1)
        code2 = context(sign, np.where(br == 1, RB, right), odd1)
        # The tokens from position pos - 1 (left neighbour) to the right neighbour; the window's
        # pairs start at the even position pos - parity, so at index 1 - parity here.
        t1, t2 = NUMBER0 + n1, NUMBER0 + n2
        full = lambda v: np.full_like(left, v)  # noqa: E731
        ext = np.where(
            br[:, None] == 1,
            np.stack([left, full(LB), t1, sign, t2, full(RB), right], 1),
            np.stack([left, t1, sign, t2, right, right, right], 1),
        )
        first = 1 - odd
        rows = np.arange(len(ext))
        pair = [ext[rows, first + 2 * k] | ext[rows, first + 2 * k + 1] << 8 for k in range(3)]
        record = np.zeros((len(ext), 16), dtype=np.uint8)
        codes = record[:, :8].view(np.int32)
        codes[:, 0] = code1 << shift | n1 * q
        codes[:, 1] = code2 << shift | n2 * q
        words = record[:, 8:14].view(np.uint16)
        words[:, 0], words[:, 1] = pair[0], pair[1]
        words[:, 2] = np.where(br == 1, pair[2], pair[0])  # a short window writes its first pair twice
        record[:, 14] = br
        record[:, 15] = (odd + br) >> 1  # pairs from the expanded number to the first new one
        return {
            "out": out,
            "q": q,
            "zero": p * q,
            "z": z,
            "shift": shift,
            "record": record.view(np.complex128).ravel(),
        }

    def _block(self, rng, work: _Workspace, ops, tokens, lengths, prompts) -> None:
        """Draw len(tokens) samples into the given rows: n operators each, or ops[i] (non-increasing).

        Two passes. The first draws every expansion: numbers waiting to be expanded are unordered
        slots (a code and a position), so that picking one is a single uniform draw, and each step
        records the result (the window of new tokens) and where it goes. The second builds the
        states from these records (see _states), in smaller sub-blocks that stay in cache.
        """
        m = len(tokens)
        n = self.n if ops is None else int(ops[0])
        active = None if ops is None else np.searchsorted(-ops, -np.arange(n + 1), side="right")
        x, records, places = self._expand(rng, work, m, n, active)
        # Per step and row: brackets so far b_t, and v_t = t + 1 + b_t, the pairs of E_t and its
        # separator (zero for the steps a row does not take).
        opened = records.view(np.uint8).reshape(n, m, 16)[:, :, 14].astype(np.int16)
        if active is not None:
            for t in range(1, n):
                opened[t, active[t + 1] :] = 0
        counts = opened.copy()
        for t in range(1, n):
            counts[t] += counts[t - 1]
        state_pairs = counts + np.arange(2, n + 2, dtype=np.int16)[:, None]
        if active is not None:
            for t in range(1, n):
                state_pairs[t, active[t + 1] :] = 0
        size = state_pairs.sum(axis=0, dtype=np.int32)
        size += 1
        np.multiply(size, 2, out=lengths)
        np.add(counts[-1], (n if ops is None else ops) + 1, out=prompts)
        prompts *= 2
        key = np.multiply(places, 2, dtype=np.int16)  # 2 * place + 1 for a window of 3 tokens
        key += 1
        key -= opened
        third = np.multiply(opened, 2, dtype=np.int32)  # the third pair of a window, if any
        third += places
        for lo in range(0, m, work.sub):
            hi = min(m, lo + work.sub)
            steps = n if active is None else int(ops[lo])
            live = None if active is None else np.clip(active[: steps + 1] - lo, 0, hi - lo)
            self._states(work, lo, hi, steps, live, x, records, places, key, third, state_pairs, size, tokens)

    def _expand(self, rng, work: _Workspace, m: int, n: int, active):
        """The first pass: initial values, and for each step t and row the result record of its
        expansion and the pair index of the expanded number in E_{t-1}."""
        tables, p = self._tables, self.p
        q, shift, record, out = tables["q"], tables["shift"], tables["record"], tables["out"]
        # One uniform per step chooses the slot (its integer part times t) and the outcome (the
        # fraction left, still with more than 40 bits).
        draws = rng.random(out=work.draws[: (n + 1) * m].reshape(n + 1, m))
        x = (draws[0] * p).astype(np.int32)
        scaled = draws[1:]
        scaled *= work.steps[:n]
        whole = np.floor(scaled, out=work.whole[: n * m].reshape(n, m))
        scaled -= whole
        common = work.common[: n * m].reshape(n, m)
        np.multiply(scaled, q, out=common, casting="unsafe")
        zero = work.zero[: n * m].reshape(n, m)
        np.multiply(scaled, tables["z"], out=zero, casting="unsafe")
        zero += tables["zero"]
        whole *= m
        whole += work.col[:m]
        slot = work.slot[: n * m].reshape(n, m)
        np.copyto(slot, whole, casting="unsafe")

        codes = work.codes[: (n + 1) * m].reshape(n + 1, m)
        places = work.places[: (n + 1) * m].reshape(n + 1, m)
        codes_flat, places_flat = codes.ravel(), places.ravel()
        codes[0] = x * q  # context 0: even position, nothing on the left, "=" on the right
        places[0] = 0
        records = work.records[: n * m].reshape(n, m)
        at_place = work.at_place[: n * m].reshape(n, m)
        for t in range(1, n + 1):
            b = m if active is None else int(active[t])
            at = slot[t - 1, :b]
            code = codes_flat.take(at)
            place = places_flat.take(at, out=at_place[t - 1, :b])
            low = code & ((1 << shift) - 1)
            pick = common[t - 1, :b] + low
            pick = np.where(low == 0, zero[t - 1, :b], pick)
            r = out.take(pick)
            r += code >> shift
            rec = record.take(r, out=records[t - 1, :b])
            new_codes = rec.view(np.int32).reshape(b, 4)
            flags = rec.view(np.uint8).reshape(b, 16)
            codes_flat[at] = new_codes[:, 0]
            codes[t, :b] = new_codes[:, 1]
            later = np.greater(places[:t, :b], place, out=work.later[: t * b].reshape(t, b))
            step = np.add(flags[:, 14], 1, out=work.step[:b])
            later = np.multiply(later, step, out=work.shifts[: t * b].reshape(t, b))
            places[:t, :b] += later
            first = np.add(place, flags[:, 15], out=places[t, :b])
            places_flat[at] = first
            places[t, :b] += 1
        return x, records, at_place

    def _states(self, work, lo, hi, n, live, x, records, places, key, third, state_pairs, size, tokens):
        """The second pass for rows lo:hi: build E_1 .. E_n and write the samples.

        Each state is its predecessor with one number replaced by a window of 3 or 5 tokens,
        built for all rows at once in a flat buffer of fixed row width (where "shift the rest of
        the row by 1 or 2 pairs" is a shifted view of the whole buffer and two selects in integer
        arithmetic), then copied to its slot in `pairs`: E_n .. E_0 side by side at fixed offsets,
        each slot as wide as the longest state of the sub-block, shorter ones padded with zeros.
        Tokens are handled in pairs with their neighbour (a state with its separator always has
        an even length). A last compaction drops the padding.
        """
        count = hi - lo
        widths = [1] + [int(w) for w in state_pairs[:n, lo:hi].max(axis=1)]
        offsets = [0] * (n + 1)  # first pair of each state in a row of `pairs`: E_n first
        for t in range(n, 0, -1):
            offsets[t - 1] = offsets[t] + widths[t]
        height = offsets[0] + 1
        pairs = work.pairs[: count * height].reshape(count, height)
        if live is not None:
            pairs[...] = 0  # the states a row does not reach stay empty
        pairs[:, offsets[0]] = (NUMBER0 + x[lo:hi]) | EOS_ID << 8
        old, new = work.state_a, work.state_b
        width = 0
        for t in range(1, n + 1):
            b = count if live is None else int(live[t])
            grown = -(-2 * t // 8) * 8  # row width of the state buffers: room for 2t pairs
            if grown != width:
                if t > 1:  # re-lay the previous state out at the new width
                    wider = new[: b * grown].reshape(b, grown)
                    wider[:, width:] = 0
                    wider[:, :width] = old[: b * width].reshape(b, width)
                    old, new = new, old
                width = grown
            src, dst = old[: b * width], new[: b * width]
            if t == 1:
                dst[...] = 0
            else:  # dst = src with the pairs from the expanded number on shifted by 2, or by 1
                spread = np.repeat(key[t - 1, lo : lo + b].view(np.uint16), width)
                diff = work.diff[: b * width]
                short = work.short[: b * width]
                np.subtract(src[1:-1], src[:-2], out=diff[2:])
                np.bitwise_and(spread[2:], 1, out=short[2:])
                diff[2:] *= short[2:]
                np.add(src[:-2], diff[2:], out=dst[2:])
                dst[:2] = 0
                keep = np.less(work.odd[width][: b * width], spread, out=work.mask[: b * width])
                np.subtract(src, dst, out=diff)
                diff *= keep
                dst += diff
            words = records[t - 1, lo : lo + b].view(np.uint16).reshape(b, 8)
            start = work.starts[width][:b]
            base = np.add(places[t - 1, lo : lo + b], start, out=work.base[:b])
            dst[np.add(third[t - 1, lo : lo + b], start, out=work.third[:b])] = words[:, 6]
            dst[base] = words[:, 4]
            base += 1
            dst[base] = words[:, 5]
            pairs[:b, offsets[t] : offsets[t] + widths[t]] = dst.reshape(b, width)[:, : widths[t]]
            old, new = new, old

        keep = np.not_equal(pairs.ravel(), 0, out=work.keep[: count * height])
        values = np.compress(keep, pairs.ravel())
        tokens[lo:hi].view(np.uint16)[work.pad.take(size[lo:hi], axis=0)] = values


def _index(table, values: np.ndarray) -> np.ndarray:
    """Positions of `values` in the tuple `table` (every value must occur)."""
    lookup = np.zeros(max(table) + 1, dtype=np.int64)
    lookup[list(table)] = np.arange(len(table))
    return lookup[values]


class _Workspace:
    """Buffers of the vectorised sampler, reused from block to block."""

    def __init__(self, n: int, count: int, chunk: int) -> None:
        self.rows = count
        self.sub = sub = min(count, chunk)
        height = n * (n + 1) + 1
        widest = -(-2 * n // 8) * 8
        self._unordered = None
        # first pass, over the whole block
        self.draws = np.empty((n + 1) * count)
        self.whole = np.empty(n * count)
        self.steps = np.arange(1, n + 1, dtype=np.float64)[:, None]
        self.col = np.arange(count, dtype=np.float64)
        self.common = np.empty(n * count, dtype=np.int32)
        self.zero = np.empty(n * count, dtype=np.int32)
        self.slot = np.empty(n * count, dtype=np.intp)
        self.codes = np.zeros((n + 1) * count, dtype=np.int32)
        self.places = np.zeros((n + 1) * count, dtype=np.int16)
        self.records = np.zeros(n * count, dtype=np.complex128)
        self.at_place = np.zeros(n * count, dtype=np.int16)
        self.later = np.empty((n + 1) * count, dtype=bool)
        self.shifts = np.empty((n + 1) * count, dtype=np.int16)
        self.step = np.empty(count, dtype=np.int16)
        # second pass, over a sub-block
        self.pairs = np.zeros(sub * height, dtype=np.uint16)
        self.keep = np.empty(sub * height, dtype=bool)
        self.state_a = np.zeros(sub * widest, dtype=np.uint16)
        self.state_b = np.zeros(sub * widest, dtype=np.uint16)
        self.diff = np.empty(sub * widest, dtype=np.uint16)
        self.short = np.empty(sub * widest, dtype=np.uint16)
        self.mask = np.empty(sub * widest, dtype=bool)
        # per row width: odd[w] = 2 * column + 1 for every cell, starts[w] = first cell of each row
        self.odd = {w: np.tile(np.arange(1, 2 * w, 2, dtype=np.uint16), sub) for w in range(8, widest + 1, 8)}
        self.starts = {w: np.arange(0, sub * w, w, dtype=np.int32) for w in range(8, widest + 1, 8)}
        self.base = np.empty(sub, dtype=np.int32)
        self.third = np.empty(sub, dtype=np.int32)
        self.pad = np.arange(height)[None, :] < np.arange(height + 1)[:, None]  # pad[s]: s pairs

    def unordered(self, width: int):
        """Output buffers for a block of rows drawn out of order (the train split with `under`)."""
        if self._unordered is None:
            rows = self.rows
            self._unordered = (
                np.empty((rows, width), dtype=np.uint8),
                np.empty(rows, dtype=np.int32),
                np.empty(rows, dtype=np.int32),
            )
        return self._unordered
