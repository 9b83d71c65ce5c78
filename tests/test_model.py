"""The decoder: configuration errors, causality, incremental decoding, and the FLOP model."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pipeline.attention import make_attention
from pipeline.cost import flops_per_sequence
from pipeline.model import DecoderTransformer, ModelConfig, ModelError

TYPES = ["standard", "sparse", "linear"]


def model(attention: str, **kw) -> DecoderTransformer:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=kw.pop("vocab", 23), max_len=kw.pop("max_len", 64), width=kw.pop("width", 32),
                      heads=kw.pop("heads", 4), layers=kw.pop("layers", 2), dropout=0.0, attention=attention, **kw)
    return DecoderTransformer(cfg).double().eval()


@pytest.mark.parametrize("attention", TYPES)
def test_model_is_causal(attention):
    m = model(attention)
    x = torch.randint(3, 23, (2, 50))
    base = m(x)
    y = x.clone()
    y[:, 30:] = torch.randint(3, 23, (2, 20))
    assert torch.allclose(m(y)[:, :30], base[:, :30], atol=1e-12)


@pytest.mark.parametrize("attention", TYPES)
def test_step_by_step_equals_full_forward(attention):
    m = model(attention)
    x = torch.randint(3, 23, (3, 40))
    full = m(x)
    state = m.init_state(3)
    for t in range(40):
        logits, state = m.step(x[:, t], t, state)
        assert torch.allclose(logits, full[:, t], atol=1e-10)


@pytest.mark.parametrize("attention", TYPES)
def test_generate_equals_greedy_recomputation(attention):
    m = model(attention, vocab=6)  # a small vocabulary makes <eos> (id 2) likely: rows stop early
    prompt = torch.randint(3, 6, (8, 10))
    out = m.generate(prompt, 30, eos_id=2)
    seq = prompt
    for _ in range(out.shape[1] - 10):
        seq = torch.cat([seq, m(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
    ended = torch.cumsum(seq[:, 10:] == 2, dim=1) > 0
    after_eos = torch.cat([torch.zeros(8, 1, dtype=torch.bool), ended[:, :-1]], dim=1)
    expected = seq.clone()
    expected[:, 10:][after_eos] = 0
    assert torch.equal(out, expected)
    assert after_eos.any(), "the test should cover rows that stop early"


@pytest.mark.parametrize("attention", TYPES)
def test_prompts_of_different_lengths_share_one_pass(attention):
    # what answer_correct does: one pass over rows whose prompts end at different positions, each
    # row as if it had been generated alone from its own prompt
    m = model(attention, vocab=6)
    tokens = torch.randint(3, 6, (6, 12))
    lengths = torch.tensor([12, 7, 9, 7, 10, 5])
    out = m.generate(tokens, 40, eos_id=2, prompt_lengths=lengths)
    assert out.shape[1] <= 12 + 40
    for i, p in enumerate(lengths.tolist()):
        alone = m.generate(tokens[i:i + 1, :p], 12 + 40 - p, eos_id=2)[0]
        row = out[i, :len(alone)]
        assert torch.equal(row, alone), (i, p)
        assert (out[i, len(alone):] == 0).all()  # after its <eos>: padding while others go on
    assert (out == 2).any(), "the test should cover rows that stop"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 30, "heads": 4}, "not divisible"),
        ({"attention": "quadratic"}, "unknown attention"),
        ({"attention": "sparse", "attention_options": {"block": 0}}, "block"),
        ({"layers": 0}, "layers"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_configuration_fails_at_construction(kwargs, message):
    base = {"vocab_size": 10, "max_len": 16, "width": 32, "heads": 4}
    with pytest.raises(ModelError, match=message):
        DecoderTransformer(ModelConfig(**{**base, **kwargs}))


def test_sequence_longer_than_position_table():
    m = model("standard", max_len=16)
    with pytest.raises(ModelError, match="longer than max_len 16"):
        m(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize("pattern", ["fixed", "strided"])
@pytest.mark.parametrize(("length", "block", "summary"), [(1, 1, 1), (10, 3, 1), (37, 6, 2), (64, 8, 1), (65, 8, 3)])
def test_sparse_key_count_matches_brute_force(pattern, length, block, summary):
    att = make_attention("sparse", 128, block=block, summary=summary, pattern=pattern)
    assert att.keys_attended(length) == int(att.mask(length).sum())


@pytest.mark.parametrize("attention", TYPES)
def test_flop_model_matches_counted_matrix_products(attention):
    """Brute force: count the matrix products of step-by-step decoding with torch's FlopCounterMode.

    Projections, MLP and head are counted exactly; attention is counted from the products the
    incremental path really performs (standard: every cached key; linear: the recurrent update and
    read-out), sparse from its mask, since its decoding step masks rather than skips."""
    length, width, heads, layers, vocab = 24, 32, 4, 2, 23
    m = model(attention, width=width, heads=heads, layers=layers, vocab=vocab)
    x = torch.randint(3, vocab, (1, length))
    counter = FlopCounterMode(display=False)
    with counter:
        state = m.init_state(1)
        for t in range(length):
            _, state = m.step(x[:, t], t, state)
    counted = counter.get_total_flops()
    options = {}
    if attention == "sparse":
        block = m.blocks[0].attn.block
        options = {"block": block}
        # the step computes every cached key and masks; replace by the pattern's count
        dense = flops_per_sequence(length, width, layers, heads, vocab, "standard")["attention"]
        counted += flops_per_sequence(length, width, layers, heads, vocab, "sparse", **options)["attention"] - dense
    assert flops_per_sequence(length, width, layers, heads, vocab, attention, **options)["total"] == counted


def test_attention_cost_grows_as_theory_says():
    """standard ~ L^2, sparse ~ L^1.5 (block sqrt(L)), linear ~ L."""
    def attn(kind, length):
        return flops_per_sequence(length, 256, 1, 4, 10, kind)["attention"]

    for kind, exponent in [("standard", 2.0), ("sparse", 1.5), ("linear", 1.0)]:
        ratio = attn(kind, 65536) / attn(kind, 4096)
        assert abs(torch.log2(torch.tensor(ratio)).item() / 4 - exponent) < 0.02, kind
