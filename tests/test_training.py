"""Training: loss masking, metrics on hand-made batches, generation with early <eos>, a real tiny
training with W&B offline files read back, resume from a checkpoint, bitwise repeatability on the
CPU, and bad input failing before training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.generation import write_dataset
from pipeline.grading import IGNORE, chain_targets, exact_match, generated_answer
from pipeline.params import Run, TrainParams
from pipeline.stages import train as train_stage
from pipeline.tasks import make_task
from pipeline.training import ChainModule

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from settings import train_section  # noqa: E402
from wandb_records import summary_of  # noqa: E402


def test_chain_targets_mask_prompt_and_padding():
    tokens = torch.tensor([[5, 6, 1, 7, 8, 2, 0, 0], [5, 1, 9, 9, 9, 9, 2, 0]])
    lengths, prompts = torch.tensor([6, 7]), torch.tensor([3, 2])
    target = chain_targets(tokens, lengths, prompts)
    assert target.tolist() == [[IGNORE, IGNORE, 7, 8, 2, IGNORE, IGNORE], [IGNORE, 9, 9, 9, 9, 2, IGNORE]]


def test_exact_match_on_hand_made_batch():
    target = torch.tensor([[IGNORE, 3, 4, 2], [IGNORE, 3, 4, 2], [IGNORE, IGNORE, 4, IGNORE]])
    pred = torch.tensor([[9, 3, 4, 2], [9, 3, 5, 2], [1, 1, 4, 1]])
    assert exact_match(pred, target).tolist() == [True, False, True]


def test_generated_answer_with_early_eos():
    eos = 2
    out = torch.tensor([
        [7, 1, 5, 6, 2, 0, 0],  # answer 6, then <eos> and padding
        [7, 1, 2, 0, 0, 0, 0],  # <eos> right after the prompt: no answer
        [7, 1, 5, 5, 5, 5, 5],  # never ends: no answer
        [7, 1, 9, 2, 4, 2, 0],  # the first <eos> counts
    ])
    answer, valid = generated_answer(out, prompt_len=2, eos_id=eos)
    assert valid.tolist() == [True, False, False, True]
    assert answer[valid].tolist() == [6, 9]
    # each row's own prompt length: an <eos> inside a prompt does not count, nor one right after it
    answer, valid = generated_answer(out, prompt_len=torch.tensor([3, 1, 2, 5]), eos_id=eos)
    assert valid.tolist() == [True, True, False, False]
    assert answer[valid].tolist() == [6, 1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_dataset(make_task("lis", 5), {"train": 400, "val": 32, "test": 32}, 0, root / "lis_n5")
    return root


def params(**change) -> TrainParams:
    return TrainParams.parse(train_section(**change))


@pytest.fixture(autouse=True)
def _offline_wandb(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # W&B writes ./wandb here
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))


def test_training_run_writes_its_result_weights_timing_and_wandb_files(dataset, tmp_path):
    run = Run("lis_n5", "standard", 16, 0)
    result = train_stage.train_run(run, params(), dataset, tmp_path / "runs", tmp_path / "runtime")
    assert result["steps"] == 20 and result["status"] == "finished" and result["best_step"] in (5, 10, 15, 20)
    folder = tmp_path / "runs" / run.id
    assert sorted(p.name for p in folder.iterdir()) == ["model.ckpt", "train.json"]
    saved = torch.load(folder / "model.ckpt", weights_only=True)  # weights and hyperparameters only
    assert set(saved) <= {"epoch", "global_step", "pytorch-lightning_version", "state_dict", "hparams_name",
                          "hyper_parameters"}
    assert str(tmp_path) not in (folder / "model.ckpt").read_bytes().decode("latin-1")  # no absolute path
    timing = json.loads((tmp_path / "runtime" / f"{run.id}.json").read_text())
    assert timing["train_seconds"] > 0 and timing["device"] == "cpu" and timing["train_tokens_per_s"] > 0
    assert timing["peak_gpu_gib"] is None  # recorded on a GPU only
    assert timing["cpu"].endswith((", 1 thread", " threads")) and len(timing["cpu"]) > len(", 1 thread")
    assert "train_seconds" not in json.loads((folder / "train.json").read_text())
    files = list((tmp_path / "wandb").rglob("run-*.wandb"))
    assert len(files) == 1
    logged = summary_of(files[0])
    assert logged["run"]["group"] == "test-sweep" and logged["run"]["job_type"] == "train"
    assert {"lis", "standard", "n=5", "width=16"} <= set(logged["run"]["tags"])
    assert logged["config"]["dataset"]["sha256"] and logged["config"]["key"]
    assert any("val/acc" in row for row in logged["history"]) or "val/acc" in logged["summary"]
    assert any("train/loss" in row for row in logged["history"])
    assert logged["summary"]["steps"] == 20
    # a finished run with the same settings is reused, not trained again
    again = train_stage.train_run(run, params(), dataset, tmp_path / "runs", tmp_path / "runtime")
    assert again["reused"] and again["checkpoint_sha256"] == result["checkpoint_sha256"]
    assert len(list((tmp_path / "wandb").rglob("run-*.wandb"))) == 1


def test_the_train_stage_compiles_as_its_params_say_and_records_how(dataset, tmp_path, monkeypatch):
    """train.compile reaches fit (it is in no run's key, so `shard --compile` can change it for
    carried runs), and the runtime record says how the steps ran: on this CPU always eagerly."""
    import pipeline.training

    asked = []
    real = pipeline.training.compile_mode
    monkeypatch.setattr(pipeline.training, "compile_mode", lambda mode, width: asked.append(mode) or real(mode, width))
    run = Run("lis_n5", "standard", 16, 4)
    train_stage.train_run(run, params(compile="inductor-cudagraphs"), dataset, tmp_path / "runs", tmp_path / "rt")
    assert "inductor-cudagraphs" in asked and "auto" not in asked
    assert json.loads((tmp_path / "rt" / f"{run.id}.json").read_text())["compile"] == "none"


def test_an_interrupted_run_resumes_from_its_last_checkpoint(dataset, tmp_path, monkeypatch):
    run = Run("lis_n5", "linear", 16, 1)
    real = ChainModule.training_step

    def crash(self, batch, batch_idx):
        if self.global_step == 12:
            raise RuntimeError("power cut")
        return real(self, batch, batch_idx)

    monkeypatch.setattr(ChainModule, "training_step", crash)
    with pytest.raises(train_stage.RunError, match="power cut"):
        train_stage.train_run(run, params(), dataset, tmp_path / "runs", tmp_path / "runtime")
    folder = tmp_path / "runs" / run.id
    assert not (folder / "train.json").exists() and (folder / "checkpoints" / "last.ckpt").exists()
    assert torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 10
    monkeypatch.setattr(ChainModule, "training_step", real)
    resumed = train_stage.train_run(run, params(), dataset, tmp_path / "runs", tmp_path / "runtime")
    whole = train_stage.train_run(run, params(), dataset, tmp_path / "whole", tmp_path / "runtime2")
    assert resumed["steps"] == 20 and resumed["checkpoint_sha256"] == whole["checkpoint_sha256"]
    assert len(json.loads((tmp_path / "runtime" / f"{run.id}.json").read_text())["segments"]) == 2


def test_cpu_training_is_bitwise_repeatable(dataset, tmp_path):
    run = Run("lis_n5", "sparse", 16, 3)
    a = train_stage.train_run(run, params(), dataset, tmp_path / "a", tmp_path / "ta")
    b = train_stage.train_run(run, params(), dataset, tmp_path / "b", tmp_path / "tb")
    assert a["best_val_acc"] == b["best_val_acc"]
    a_bytes, b_bytes = ((tmp_path / x / run.id / "model.ckpt").read_bytes() for x in "ab")
    assert a_bytes == b_bytes


def test_with_wandb_disabled_no_stage_imports_it_and_the_weights_are_the_same(dataset, tmp_path, monkeypatch):
    """WANDB_MODE=disabled (a lent GPU machine, where wandb is not installed): train, evaluate and
    report run with every `import wandb` failing, write no W&B files, and train the weights the
    logged run trains."""
    from pipeline.stages import evaluate as evaluate_stage
    from pipeline.stages import report as report_stage

    run = Run("lis_n5", "sparse", 16, 3)
    logged = train_stage.train_run(run, params(), dataset, tmp_path / "logged", tmp_path / "tl")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    work = tmp_path / "off"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "params.yaml").write_text(yaml.safe_dump(
        {"train": train_section(attentions=["sparse"], widths=[16], seeds=[3]),
         "evaluate": {"batch_size": 16, "generation_samples": 8, "concurrency": 1},
         "report": {"thresholds": [0.9, 0.99]}}))
    train_stage.run(work / "params.yaml", dataset, work / "runs", work / "runtime")
    evaluate_stage.run(work / "params.yaml", dataset, work / "runs", work / "results", work / "runtime-eval",
                       work / "metrics.json")
    report_stage.run(work / "params.yaml", work / "results", work / "runtime", work / "reports")
    assert (work / "reports" / "report.md").exists() and json.loads((work / "metrics.json").read_text())
    assert not (work / "wandb").exists() and len(list((tmp_path / "wandb").rglob("run-*.wandb"))) == 1
    off = json.loads((work / "runs" / run.id / "train.json").read_text())
    assert off["best_val_acc"] == logged["best_val_acc"]
    weights = [(root / run.id / "model.ckpt").read_bytes() for root in (work / "runs", tmp_path / "logged")]
    assert weights[0] == weights[1]


def test_a_diverging_run_stops_with_its_reason_and_the_sweep_goes_on(dataset, tmp_path, monkeypatch):
    real = ChainModule.chain_loss  # the training step's loss

    def explode(self, tokens, lengths, prompts):
        loss = real(self, tokens, lengths, prompts)
        if self.global_step >= 7 and self.hparams.model["attention"] == "linear":
            loss = loss * float("nan")
        return loss

    monkeypatch.setattr(ChainModule, "chain_loss", explode)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": train_section(attentions=["linear", "standard"])}))
    train_stage.run(tmp_path / "params.yaml", dataset, tmp_path / "runs", tmp_path / "runtime")
    bad = json.loads((tmp_path / "runs" / "lis_n5-linear-w16-s0" / "train.json").read_text())
    good = json.loads((tmp_path / "runs" / "lis_n5-standard-w16-s0" / "train.json").read_text())
    assert bad["status"] == "diverged" and bad["steps"] == 10 and bad["best_val_acc"] is None
    assert bad["reason"] == "non-finite training loss between steps 6 and 10"
    assert good["status"] == "finished" and good["steps"] == 20


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        ({"attentions": ["standard", "performer"]}, ["train.attentions[1]", "unknown attention", "performer"]),
        ({"widths": [16, 30]}, ["train.widths[1]", "not divisible by heads 4"]),
        ({"datasets": ["lis_n5", "ed_n9"]}, ["dataset 'ed_n9' not found"]),
        ({"val_every": 3}, ["train.val_every", "must divide train.max_steps (20)"]),
        ({"attention_options": {"linear": {"window": 4}}}, ["train.attention_options.linear", "no option 'window'"]),
        ({"lr": "fast"}, ["train.lr", "expected a number"]),
        ({"lr_width": 0}, ["train.lr_width", ">= 1"]),
        ({"max_steps": 2.5}, ["train.max_steps", "integer"]),
        ({"attention_options": {"sparse": {"block": 0}}}, ["train.attention_options.sparse", "block"]),
    ],
)
def test_bad_training_input_fails_before_training(dataset, tmp_path, change, needles):
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "datasets").symlink_to(dataset)
    (work / "params.yaml").write_text(yaml.safe_dump({"train": train_section(**change)}))
    result = cli(["train", "--params", "params.yaml"], work)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]
    assert not (work / "runs").exists() and not (work / "wandb").exists() and not (work / "runtime").exists()


def test_a_run_whose_train_json_was_deleted_is_trained_again_with_a_notice(dataset, tmp_path, capsys):
    run = Run("lis_n5", "standard", 16, 0)
    train_stage.train_run(run, params(max_steps=10, val_every=5), dataset, tmp_path / "runs", tmp_path / "rt")
    (tmp_path / "runs" / run.id / "train.json").unlink()
    capsys.readouterr()
    train_stage.train_run(run, params(max_steps=10, val_every=5), dataset, tmp_path / "runs", tmp_path / "rt")
    assert "trained weights without their train.json" in capsys.readouterr().err
    assert (tmp_path / "runs" / run.id / "train.json").exists()


def test_evaluate_without_training_fails_clearly(tmp_path):
    evaluate = {"batch_size": 8, "generation_samples": 4, "concurrency": 1}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"evaluate": evaluate}))
    result = cli(["evaluate"], tmp_path)
    assert result.returncode == 2 and "no trained runs" in result.stderr and not (tmp_path / "results").exists()


def test_params_yaml_train_section_is_valid():
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert len(TrainParams.parse(data["train"]).runs) >= 4 * 3
    json.dumps(TrainParams.parse(data["train"]).training())


def test_params_yaml_is_the_composed_defaults():
    """params.yaml, which `dvc repro` reads, is what Hydra composes from conf/ with no profile."""
    from pipeline.compose import compose

    assert yaml.safe_load((ROOT / "params.yaml").read_text()) == compose(None, ROOT / "conf")


@pytest.mark.parametrize("profile", ["paper", "gpu"])
def test_profiles_compose_to_valid_parameters(profile):
    from pipeline.compose import compose
    from pipeline.generation import tasks_of
    from pipeline.params import EvaluateParams, GenerateParams, ReportParams

    data = compose(profile, ROOT / "conf")
    generated = {d.name for d, _ in tasks_of(GenerateParams.parse(data["generate"]))}
    train = TrainParams.parse(data["train"])
    EvaluateParams.parse(data["evaluate"])
    ReportParams.parse(data["report"])
    assert set(train.datasets) == generated


def test_a_profile_holds_only_what_it_changes():
    """Each key a profile sets exists in the defaults and differs from them (nothing copied)."""
    base = yaml.safe_load((ROOT / "conf" / "config.yaml").read_text())
    for path in (ROOT / "conf" / "profile").glob("*.yaml"):
        own = {k: v for k, v in yaml.safe_load(path.read_text()).items() if k != "defaults"}
        for section, keys in own.items():
            for key, value in keys.items():
                assert key in base[section], f"{path.name}: {section}.{key} is not a parameter"
                assert value != base[section][key], f"{path.name}: {section}.{key} repeats the default"


def test_the_params_command_writes_a_profile_the_stages_read(tmp_path, monkeypatch):
    from pipeline.__main__ import main
    from pipeline.compose import compose
    from pipeline.params import load_section

    monkeypatch.chdir(ROOT)  # conf/ is found from the repository
    out = tmp_path / "params.yaml"
    assert main(["params", "--profile", "gpu", "--out", str(out)]) == 0
    assert yaml.safe_load(out.read_text()) == compose("gpu", ROOT / "conf")
    assert load_section(out, "train").sweep == "gpu"


def test_an_unknown_profile_is_one_line_error():
    from pipeline.compose import compose

    with pytest.raises(ValueError, match="unknown profile 'papr' \\(known: gpu, paper"):
        compose("papr", ROOT / "conf")


def test_progress_lines_while_a_run_trains_in_any_terminal_or_log(dataset, tmp_path, monkeypatch, capsys):
    from pipeline.execution import callbacks

    monkeypatch.setattr(callbacks, "PROGRESS_EVERY", 0.0)  # a line at every chance
    train_stage.train_run(Run("lis_n5", "standard", 16, 5), params(), dataset, tmp_path / "runs", tmp_path / "rt",
                          "[1/1] ")
    err = capsys.readouterr().err
    assert "train [1/1] lis_n5-standard-w16-s5: step 20/20, val acc" in err
    assert "GPU available" not in err and "Tip" not in err


def test_runs_trained_and_evaluated_side_by_side_equal_one_after_another(dataset, tmp_path, monkeypatch):
    """The process pools of the train and evaluate stages give the results of the sequential path,
    bit for bit on the CPU when it uses the threads that each pool process gets (its share of the
    cores); a stage that only reuses starts no pool."""
    from pipeline.stages import evaluate as evaluate_stage

    outcome = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
    for workers in (1, 2):
        if workers == 2:
            torch.set_num_threads(threads)
        root = tmp_path / f"workers{workers}"
        root.mkdir()
        train = train_section(attentions=["standard", "linear"], max_steps=10, concurrency=workers)
        (root / "params.yaml").write_text(yaml.safe_dump(
            {"train": train, "evaluate": {"batch_size": 16, "generation_samples": 8, "concurrency": workers}}))
        train_stage.run(root / "params.yaml", dataset, root / "runs", root / "runtime")
        evaluate_stage.run(root / "params.yaml", dataset, root / "runs", root / "results", root / "runtime-eval",
                           root / "metrics.json")
        outcome[workers] = {p.name: json.loads(p.read_text()) for p in sorted((root / "results").glob("*.json"))}
    assert len(outcome[1]) == 2 and outcome[1] == outcome[2]

    def no_pool(*args):
        raise AssertionError("a process pool for runs that are only reused")

    monkeypatch.setattr(train_stage, "stage_pool", no_pool)
    monkeypatch.setattr(evaluate_stage, "stage_pool", no_pool)
    train_stage.run(root / "params.yaml", dataset, root / "runs", root / "runtime")
    evaluate_stage.run(root / "params.yaml", dataset, root / "runs", root / "results", root / "runtime-eval",
                       root / "metrics.json")
    assert {p.name: json.loads(p.read_text()) for p in sorted((root / "results").glob("*.json"))} == outcome[2]


def test_schedule_warms_up_holds_then_decays_to_a_tenth():
    from pipeline.training import Schedule

    wsd = Schedule(total=100, warmup=10, decay=20)
    assert [wsd(s) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert wsd(10) == wsd(50) == wsd(80) == 1.0  # constant until the last 20 steps
    assert wsd(90) == 1.0 - 0.9 * 10 / 20 and abs(wsd(99) - (1.0 - 0.9 * 19 / 20)) < 1e-12
    assert all(Schedule(100, 10, 0)(s) == 1.0 for s in range(10, 100))  # no decay: constant to the end
    old = Schedule(100, 10, 90)  # decay from the end of warm-up: the earlier schedule
    assert all(old(s) == max(0.1, 1.0 - 0.9 * (s - 10) / 90) for s in range(10, 100))


def test_the_rate_falls_as_one_over_width_above_lr_width_only(dataset):
    import json as json_

    from pipeline.training import build_module

    meta = json_.loads((dataset / "lis_n5" / "meta.json").read_text())
    settings = params(lr=1e-3, lr_width=256).training()
    rates = {}
    for width in (64, 256, 512, 1024):
        module = build_module(meta, {"attention": "standard", "width": width, "seed": 0}, settings)
        module.trainer = type("T", (), {"max_steps": 10})()  # configure_optimizers reads only the step cap
        optimizer = module.configure_optimizers()["optimizer"]
        rates[width] = optimizer.defaults["lr"]
    assert rates == {64: 1e-3, 256: 1e-3, 512: 5e-4, 1024: 2.5e-4}
    unscaled = build_module(meta, {"attention": "standard", "width": 1024, "seed": 0}, params(lr=1e-3).training())
    assert unscaled.hparams.optim["lr"] == 1e-3  # lr_width left out: one rate at every width


def test_the_memory_estimate_stays_above_every_measured_peak():
    """Each peak GPU memory that bench-train measured (the committed benchmarks/results/throughput.json)
    is below what peak_gib estimates for its batch, length, width and the benchmark model's depth."""
    from benchmarks.train import settings as bench_settings
    from pipeline.stages.train import peak_gib

    layers = bench_settings(1, 1, "auto")["layers"]  # the depth of every benchmarked model
    data = json.loads((ROOT / "benchmarks" / "results" / "throughput.json").read_text())
    peaks = [(m["batch"], r) for m in data["measurements"] for r in m["records"] if r.get("peak_gpu_gib") is not None]
    assert peaks  # the file does hold measured peaks
    for batch, r in peaks:
        estimate = peak_gib(batch, r["L"], r["width"], layers)
        assert estimate > r["peak_gpu_gib"], (r["attention"], r["width"], r["L"], r.get("compile"), estimate)


def test_gpu_concurrency_leaves_room_for_the_largest_run():
    from pipeline.execution.capacity import RUNS_PER_GPU
    from pipeline.stages.train import gpu_workers, peak_gib

    h200 = 139.0
    assert gpu_workers(48, peak_gib(256, 220, 256, 3), h200) == RUNS_PER_GPU  # a sweep of small models
    largest = peak_gib(512, 508, 1024, 3)  # the paper's largest cell
    assert gpu_workers(260, largest, h200) == 2 and 2 * largest < 0.85 * h200
    assert gpu_workers(3, 1.0, h200) == 3 and gpu_workers(5, 500.0, h200) == 1


def test_every_compile_mode_is_accepted_by_the_params_and_known_to_training():
    from pipeline.params import COMPILE_MODES
    from pipeline.training import COMPILE, compiled_loss

    assert COMPILE_MODES == ("auto", *COMPILE)  # params.py cannot import torch: the two lists must agree
    for mode in COMPILE:  # torch.compile wraps lazily: nothing is compiled until a GPU step calls it
        assert callable(compiled_loss(lambda x: x, mode))
    with pytest.raises(ValueError, match="unknown mode 'fast'"):
        compiled_loss(lambda x: x, "fast")


def test_the_segment_clock_keeps_the_largest_peak_gpu_memory_of_every_segment(tmp_path, monkeypatch):
    from pipeline.execution.callbacks import SegmentClock

    allocated = {"now": 3 * 2**30}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: allocated["now"])
    state = {"segments": [10.0, 0.0], "peak_gpu_gib": 5.0}  # an earlier segment peaked at 5 GiB
    clock = SegmentClock(tmp_path / "resume.json", state)
    clock.on_train_start()
    clock.tick(force=True)
    assert json.loads((tmp_path / "resume.json").read_text())["peak_gpu_gib"] == 5.0
    allocated["now"] = 7.5 * 2**30
    clock.tick(force=True)
    assert json.loads((tmp_path / "resume.json").read_text())["peak_gpu_gib"] == 7.5


def test_a_run_records_its_validation_curve(dataset, tmp_path):
    run = Run("lis_n5", "standard", 16, 0)
    train_stage.train_run(run, params(max_steps=10, val_every=5), dataset, tmp_path / "runs", tmp_path / "rt")
    record = json.loads((tmp_path / "runs" / run.id / "train.json").read_text())
    assert [p["sequences"] for p in record["curve"]] == [5 * 32, 10 * 32]
    assert max(p["acc"] for p in record["curve"]) == pytest.approx(record["best_val_acc"])


def test_where_the_errors_are_matches_a_sample_by_sample_count(tmp_path):
    """Exact match by sequence length and wrong tokens by position, against a plain loop over the test
    samples, on a task whose lengths vary (ED: the first string's length varies)."""
    from settings import training_settings

    from pipeline.data import verify
    from pipeline.evaluation import evaluate
    from pipeline.grading import chain_targets
    from pipeline.training import ChainDataModule, fit

    folder = tmp_path / "ed_n4"
    write_dataset(make_task("ed", 4), {"train": 200, "val": 16, "test": 48}, 0, folder)
    meta = verify(folder)
    settings = training_settings(batch_size=16, max_steps=3, val_every=3, val_generation=0, compile="none")
    fit(folder, meta, tmp_path / "run", {"attention": "standard", "width": 16, "seed": 0}, settings)
    scores = evaluate(tmp_path / "run" / "model.ckpt", folder, meta, 16, 0, 0)

    module = ChainModule.load_from_checkpoint(tmp_path / "run" / "model.ckpt", map_location="cpu", weights_only=True)
    module.eval()
    dm = ChainDataModule(folder, meta, 16, eval_batch_size=16)
    dm.setup("test")
    by_length, by_position = {}, {}
    with torch.no_grad():
        for tokens, lengths, prompts in dm.test_dataloader():
            target = chain_targets(tokens, lengths, prompts)
            pred = module.model(tokens[:, :-1]).argmax(-1)
            for row in range(len(tokens)):
                n = int(lengths[row])
                graded = [p for p in range(target.shape[1]) if target[row, p] != IGNORE]
                wrong = [p for p in graded if pred[row, p] != target[row, p]]
                exact, count = by_length.get(n, [0, 0])
                by_length[n] = [exact + (not wrong), count + 1]
                for p in graded:
                    w, g = by_position.get(p, [0, 0])
                    by_position[p] = [w + (p in wrong), g + 1]
    assert len(by_length) > 1 and sum(c for _, c in by_length.values()) == 48

    def lists(counts: dict, names: tuple[str, str, str]) -> dict:
        keys = sorted(counts)
        return {names[0]: keys, names[1]: [counts[k][0] for k in keys], names[2]: [counts[k][1] for k in keys]}

    assert scores["exact_by_length"] == lists(by_length, ("length", "exact", "sequences"))
    assert scores["wrong_by_position"] == lists(by_position, ("position", "wrong", "graded"))
