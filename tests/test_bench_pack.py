"""The packed-training benchmark (benchmarks/pack.py): it runs and records on the CPU, and on a
GPU its graphed, packed steps compute what the eager steps do."""

import json

import pytest
import torch

from benchmarks import pack


def test_pack_benchmark_writes_its_timings_on_the_cpu(tmp_path):
    out = tmp_path / "pack.json"
    result = pack.run(out, steps=4, batch=4, length=16, vocab=12, widths=[8], git="test")
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert len(result["models"]) == 3 and result["seconds"]["sequential_eager"] > 0
    assert set(result["seconds_per_model"]["sequential_eager"]) == set(result["models"])
    if not torch.cuda.is_available():
        assert set(result["seconds"]) == {"sequential_eager"} and result["speedup"] == {} and not result["errors"]


@pytest.mark.parametrize("steps, batch", [(3, 4), (10, 0)])
def test_pack_benchmark_refuses_too_few_steps_or_an_empty_batch(tmp_path, steps, batch):
    with pytest.raises(ValueError, match="--steps must be more than 3"):
        pack.run(tmp_path / "pack.json", steps=steps, batch=batch)
    assert not (tmp_path / "pack.json").exists()


@pytest.mark.parametrize("phases, message", [(("packed_compiled", "eager"), "unknown 'eager'"), ((), "none given")])
def test_pack_benchmark_refuses_an_unknown_or_no_phase(tmp_path, phases, message):
    with pytest.raises(ValueError, match=message):
        pack.run(tmp_path / "pack.json", steps=4, batch=4, phases=phases)
    assert not (tmp_path / "pack.json").exists()


def test_a_bad_pack_phase_is_one_line_from_the_command_line(tmp_path):
    import subprocess
    import sys

    command = ["pack", "--phases", "packed,sequential_eager", "--out", str(tmp_path / "pack.json")]
    result = subprocess.run([sys.executable, "-m", "benchmarks", *command], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: pack: --phases: unknown 'packed' (known: packed_compiled, packed_graphed, sequential_graphed, "
        "sequential_eager)"]
    assert not (tmp_path / "pack.json").exists()


def test_the_chosen_phases_alone_run_and_the_command_says_so(tmp_path):
    result = pack.run(tmp_path / "pack.json", steps=4, batch=4, length=16, vocab=12, widths=[8], git="test",
                      phases=("packed_compiled", "sequential_eager"))
    assert result["command"].endswith("--phases packed_compiled,sequential_eager")
    expected = {"packed_compiled", "sequential_eager"} if torch.cuda.is_available() else {"sequential_eager"}
    assert set(result["seconds"]) | set(result["errors"]) == expected
    assert set(result["training_loop_seconds"]) <= {"packed_compiled"}


def test_an_eager_member_learns_its_tokens():
    m = pack.member("standard", 16, 8, 12, 8, 8, 200, "cpu", graphed=False, dropout=0.0)
    pack.train_eager(m, 200, record_every=10)
    assert m.losses[-1] < 0.5 * m.losses[0]  # 8 rows, seen over and over: memorised
    assert int(m.step_index) == 200


def assert_computes_the_eager_steps(members, eager):
    """Each member's losses after its capture, and its final weights, are the eager member's."""
    expected = torch.stack(eager.losses[pack.WARMUP_STEPS:]).float()
    for m in members:
        assert torch.allclose(torch.stack(m.losses).float(), expected, rtol=2e-2, atol=1e-3)
        for a, b in zip(m.model.parameters(), eager.model.parameters()):
            assert torch.allclose(a, b, rtol=5e-2, atol=5e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("attention", ["standard", "sparse", "linear"])
def test_graphed_packed_steps_compute_the_eager_steps(attention):
    steps = 12
    eager = pack.member(attention, 32, 16, 40, 8, 32, steps, "cuda", graphed=False, dropout=0.0)
    pack.train_eager(eager, steps, record_every=1)
    graphed = [pack.member(attention, 32, 16, 40, 8, 32, steps, "cuda", graphed=True, dropout=0.0)
               for _ in range(2)]  # two of them, as a pack
    for m in graphed:
        pack.capture(m)
    pack.train_packed(graphed, steps, record_every=1)
    assert_computes_the_eager_steps(graphed, eager)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_graphed_packed_steps_compute_the_eager_steps():
    steps = 12
    eager = pack.member("standard", 32, 16, 40, 8, 32, steps, "cuda", graphed=False, dropout=0.0)
    pack.train_eager(eager, steps, record_every=1)
    compiled = pack.member("standard", 32, 16, 40, 8, 32, steps, "cuda", graphed=True, dropout=0.0, compiled=True)
    start = torch.cat([p.detach().flatten() for p in compiled.model.parameters()])  # the eager member's start too
    pack.capture(compiled)
    from torch._dynamo.utils import counters
    assert counters["stats"]["unique_graphs"] >= 1  # inductor's kernels, not eager ones, in the graph
    pack.train_packed([compiled], steps, record_every=1)
    expected = torch.stack(eager.losses[pack.WARMUP_STEPS:]).float()
    assert torch.allclose(torch.stack(compiled.losses).float(), expected, rtol=2e-2, atol=1e-3)
    # Inductor's kernels round differently, and AdamW's first steps move a weight by about lr whatever
    # its gradient's size: where a gradient is near 0, rounding flips its sign. So no elementwise bound:
    # the compiled weights must end far closer to the eager ones than the eager ones moved.
    ours, theirs = (torch.cat([p.detach().flatten() for p in m.model.parameters()]) for m in (compiled, eager))
    ratio = ((ours - theirs).norm() / (theirs - start).norm()).item()
    print(f"compiled member: weight distance to eager / eager's movement = {ratio:.4f}")
    assert ratio < 0.25, ratio
