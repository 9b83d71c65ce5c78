"""Command line: `python -m pipeline <stage> ...`. The only module that parses arguments."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml


def option(text: str) -> tuple[str, object]:
    """`key=value` with a YAML value (`band=3`, `under=false`, `number_range=null`)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, value = text.split("=", 1)
    return key, yaml.safe_load(value)


def positive(text: str) -> int:
    """A positive integer argument."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m pipeline", description="Stages and tools of the pipeline; "
                                  "`dvc repro` runs the stages in order.")
    top.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", help="the stage or tool to run")

    gen = sub.add_parser("generate", help="DVC stage: datasets of params.yaml's generate section")
    gen.add_argument("--params", type=Path, default=Path("params.yaml"), help="parameters file (default: %(default)s)")
    gen.add_argument("--out", type=Path, default=Path("data/datasets"),
                     help="folder of the dataset folders (default: %(default)s)")

    for stage, what in (("train", "every run of the sweep"), ("evaluate", "every run of the sweep on its test split"),
                        ("report", "figures, tables and reports/report.md")):
        st = sub.add_parser(stage, help=f"DVC stage: {what} (params.yaml's {stage} section)")
        st.add_argument("--params", type=Path, default=Path("params.yaml"),
                        help="parameters file (default: %(default)s)")
        if stage == "train":  # where the stage reads and writes (a DDP training's processes get them)
            st.add_argument("--data", type=Path, default=Path("data/datasets"), help="datasets (default: %(default)s)")
            st.add_argument("--runs", type=Path, default=Path("runs"), help="trained runs (default: %(default)s)")
            st.add_argument("--runtime", type=Path, default=Path("runtime/train"),
                            help="run-dependent records (default: %(default)s)")
            st.add_argument("--shard", help="I/N: train only every N-th run of the sweep from the I-th (a job "
                                            "array's task I of N); `dvc repro` records the sweep afterwards")

    ga = sub.add_parser("gather", help="copy the finished runs of other revisions (shards of a sweep trained "
                                       "elsewhere) into runs/, from the DVC cache or remote")
    ga.add_argument("revisions", nargs="+", help="git revisions (branches, tags, commits) whose runs to take")
    exp = sub.add_parser("export", help="one task and size in the CoT_benchmark text format")
    exp.add_argument("--task", required=True, help="task name: arithmetic, ed, ed_local or lis")
    exp.add_argument("--n", type=int, required=True, help="problem size")
    exp.add_argument("--train-size", type=int, required=True, help="training samples")
    exp.add_argument("--test-size", type=int, required=True, help="test samples")
    exp.add_argument("--seed", type=int, default=2023, help="random seed (default: %(default)s)")
    exp.add_argument("--out", type=Path, required=True, help="folder that receives chain/ and decoder/")
    exp.add_argument("--option", type=option, action="append", default=[], metavar="KEY=VALUE",
                     help="a task option, e.g. band=3 (repeatable)")

    bench = sub.add_parser("bench-data", help="benchmark: vectorised generators against plain Python")
    bench.add_argument("--json", type=Path, default=Path("reports/bench/data.json"),
                       help="where the results go (default: %(default)s)")
    bench.add_argument("--full-size", type=int, default=1_000_000,
                       help="ED n=20 training samples for the end-to-end timing (0 skips it)")

    att = sub.add_parser("bench-attention", help="benchmark: attention time and memory against L")
    att.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                     help="where to time (default: the GPU if there is one)")
    att.add_argument("--lengths", type=int, nargs="+", help="default: 256..65536 on the GPU, 256..4096 on the CPU")
    att.add_argument("--tokens", type=int, help="tokens per batch (default: 2**17 on the GPU, 2**13 on the CPU)")
    att.add_argument("--repeat", type=int, default=10, help="timed repetitions per point (default: %(default)s)")
    att.add_argument("--out", type=Path, help="default: reports/bench/attention.json (attention_cpu.json on CPU)")
    att.add_argument("--git-rev", help="record this revision (where the tree has no .git)")
    tr = sub.add_parser("bench-train", help="benchmark: the train stage's tokens/s against the public architecture")
    tr.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="where to time (default: the GPU if there is one)")
    tr.add_argument("--batch", type=int, help="sequences per step (default: 512 on the GPU, 16 on the CPU)")
    tr.add_argument("--warmup", type=int, default=20, help="untimed steps first (default: %(default)s)")
    tr.add_argument("--steps", type=int, default=50, help="timed steps (default: %(default)s)")
    tr.add_argument("--train-size", type=int, default=20_000, help="samples of each generated dataset")
    tr.add_argument("--out", type=Path, help="default: reports/bench/train.json (train_cpu.json on the CPU)")
    tr.add_argument("--git-rev", help="record this revision (where the tree has no .git)")
    tr.add_argument("--compile", default="auto",
                    help="comma-separated train.compile modes to time each cell with (default: %(default)s)")
    tr.add_argument("--cells", default="",
                    help="comma-separated WIDTHxL cells, L one of 44, 212, 508 (default: the issue's cells)")
    tr.add_argument("--only", default="", help="comma-separated record names to time (default: every variant)")
    tr.add_argument("--sweep", action="store_true",
                    help="instead: time the train stage on a sweep of 12 small runs, sequential eager against "
                         "its defaults (writes reports/bench/sweep.json)")
    tr.add_argument("--sweep-steps", type=int, default=600, help="training steps of each sweep run")
    tr.add_argument("--sweep-stage", default="auto:auto",
                    help="comma-separated CONCURRENCY:COMPILE configurations of the stage to time, each a phase "
                         "(default: %(default)s, the stage's defaults)")
    tr.add_argument("--sweep-phases", default="stage,evaluate,eager",
                    help="comma-separated phases to run, of %(default)s and eager_priced (the eager leg priced "
                         "from each run's timed eager step, for run lengths it would take too long to run)")
    pk = sub.add_parser("bench-pack", help="benchmark: 12 small models trained in one process as CUDA graphs on "
                                            "their own streams, against one after another eagerly (pack.json)")
    pk.add_argument("--steps", type=int, default=1000, help="training steps of each model (default: %(default)s)")
    pk.add_argument("--batch", type=int, help="sequences per step (default: 512 on the GPU, 8 on the CPU)")
    pk.add_argument("--out", type=Path, help="default: reports/bench/pack.json (pack_cpu.json on the CPU)")
    pk.add_argument("--git-rev", help="record this revision (where the tree has no .git)")
    pk.add_argument("--phases", help="comma-separated phases, of packed_compiled, packed_graphed, sequential_graphed, "
                                      "sequential_eager (the graphed ones on a GPU only; default: all but the first)")
    so = sub.add_parser("bench-scaleout", help="benchmark: a sweep on one GPU against several, one training "
                                               "with DDP over several GPUs against one (scaleout.json)")
    so.add_argument("--gpus", type=int, default=2, help="GPUs (CPU processes on the CPU) to spread over")
    so.add_argument("--sweep-width", type=int, default=256, help="width of the sweep's runs")
    so.add_argument("--sweep-runs", type=int, default=8, help="runs in the sweep (seeds of one configuration)")
    so.add_argument("--sweep-steps", type=int, default=300, help="training steps of each sweep run")
    so.add_argument("--ddp-width", type=int, default=1024, help="width of the DDP training")
    so.add_argument("--batch", type=int, default=512, help="global batch (default: %(default)s)")
    so.add_argument("--warmup", type=int, default=10, help="untimed DDP steps first")
    so.add_argument("--steps", type=int, default=30, help="timed DDP steps")
    so.add_argument("--train-size", type=int, default=20_000, help="samples of the generated dataset")
    so.add_argument("--out", type=Path, default=Path("reports/bench/scaleout.json"), help="default: %(default)s")
    so.add_argument("--git-rev", help="record this revision (where the tree has no .git)")
    st = sub.add_parser("study-schedule", help="the schedule study: validation accuracy against sequences seen")
    st.add_argument("--datasets", default="ed_n12,lis_n110", help="comma-separated (default: %(default)s)")
    st.add_argument("--attentions", default="standard,sparse,linear", help="comma-separated (default: %(default)s)")
    st.add_argument("--widths", default="256", help="comma-separated (default: %(default)s)")
    st.add_argument("--lrs", default="5e-4,1e-3,2e-3", help="comma-separated learning rates (default: %(default)s)")
    st.add_argument("--lr-width", type=positive,
                    help="scale each lr as the profiles do above this width (train.lr_width: lr x WIDTH / width; "
                         "default: every lr as given at every width)")
    st.add_argument("--dropouts", default="0", help="comma-separated (default: %(default)s)")
    st.add_argument("--extra-dropout", default="standard=0.1",
                    help="ATTENTION=DROPOUT pairs also trained at every lr (default: %(default)s)")
    st.add_argument("--sequences", type=int, default=4_000_000, help="cap on training sequences per configuration")
    st.add_argument("--decay-fraction", type=float, default=0.0,
                    help="decay the rate linearly to 10%% over this last fraction of the cap (default: "
                         "%(default)s, constant: the study; 0.2 with --sequences 8192000: the profiles' schedule)")
    st.add_argument("--batch", type=int, default=512, help="sequences per step (default: %(default)s)")
    st.add_argument("--val-every", type=int, default=250, help="steps between validations (default: %(default)s)")
    st.add_argument("--warmup", type=int, default=200, help="warm-up steps (default: %(default)s)")
    st.add_argument("--stop-at", type=float, default=0.995, help="stop a configuration at this accuracy")
    st.add_argument("--train-size", type=int, default=1_000_000, help="training samples of each dataset")
    st.add_argument("--only", default="", help="train only configurations whose name contains one of these "
                                               "comma-separated strings, in their order")
    st.add_argument("--budget", type=float, help="seconds this command may take: configurations that would "
                                                 "not fit are left for a later call")
    st.add_argument("--out", type=Path, default=Path("reports/convergence"), help="default: %(default)s")
    st.add_argument("--git-rev", help="record this revision (where the tree has no .git)")
    st.add_argument("--plot", action="store_true", help="only draw curves.png and table.md from study.json")
    ph = sub.add_parser("predict-hours", help="predicted GPU-hours of a profile's sweep, from bench-train's "
                                              "measured throughput (every run to the cap: an upper bound)")
    ph.add_argument("--params", type=Path, default=Path("params.yaml"), help="default: %(default)s")
    ph.add_argument("--bench", type=Path, nargs="+", help="bench-train JSON files (default: reports/bench/"
                                                          "train.json, the session-4 and -5 w64 and w1024 records, "
                                                          "session 8's w32-128 cells)")
    ph.add_argument("--caps", type=int, nargs="+", help="caps on sequences per run to price (default: the "
                                                        "profile's max_steps x batch_size)")
    ph.add_argument("--out", type=Path, help="also write the prediction as JSON here")
    return top


def dispatch(args) -> None:
    if args.command == "generate":
        from .stages import generate

        generate.run(args.params, args.out)
    elif args.command == "train":
        from .stages import train

        train.run(args.params, args.data, args.runs, args.runtime,
                  train.parse_shard(args.shard) if args.shard else None)
    elif args.command == "gather":
        from .stages import gather

        gather.gather(args.revisions)
    elif args.command == "evaluate":
        from .stages import evaluate

        evaluate.run(args.params)
    elif args.command == "report":
        from .stages import report

        report.run(args.params)
    elif args.command == "export":
        from .stages import export

        export.run(args.task, args.n, args.train_size, args.test_size, args.seed, args.out, **dict(args.option))
    elif args.command == "bench-data":
        from .bench import data_generation

        data_generation.run(args.json, args.full_size)
    elif args.command == "bench-attention":
        import torch

        from .bench import attention

        device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        gpu = device == "cuda"
        lengths = args.lengths or [2**e for e in range(8, 17 if gpu else 13)]
        out = args.out or Path("reports/bench/attention.json" if gpu else "reports/bench/attention_cpu.json")
        result = attention.run(out, device, lengths, args.tokens or (2**17 if gpu else 2**13),
                               repeat=args.repeat, git=args.git_rev)
        attention.plot(result, out.with_suffix(".png"))
    elif args.command == "bench-pack":
        import torch

        from .bench import pack

        gpu = torch.cuda.is_available()
        phases = pack.DEFAULT_PHASES if args.phases is None else tuple(p for p in args.phases.split(",") if p)
        pack.run(args.out or Path("reports/bench/pack.json" if gpu else "reports/bench/pack_cpu.json"), args.steps,
                 args.batch or (512 if gpu else 8), git=args.git_rev, phases=phases)
    elif args.command == "bench-scaleout":
        from .bench import scaleout

        scaleout.run(args.out, args.gpus, args.sweep_width, args.sweep_runs, args.sweep_steps, args.ddp_width,
                     args.batch, args.warmup, args.steps, args.train_size, args.git_rev)
    elif args.command == "study-schedule":
        from .bench import convergence

        if not args.plot:
            split = lambda text: [x for x in text.split(",") if x]  # noqa: E731
            extra = dict(pair.split("=") for pair in split(args.extra_dropout))
            chosen = convergence.configs(split(args.datasets), split(args.attentions),
                                         [int(w) for w in split(args.widths)], [float(x) for x in split(args.lrs)],
                                         [float(x) for x in split(args.dropouts)],
                                         {k: float(v) for k, v in extra.items()}, args.decay_fraction,
                                         args.sequences, args.lr_width)
            if args.only:  # in the order of --only's parts
                chosen = list(dict.fromkeys(c for part in split(args.only) for c in chosen if part in c.name))
            convergence.run(args.out, chosen, args.batch, args.sequences, args.val_every, args.warmup, args.stop_at,
                            args.train_size, args.git_rev, args.budget)
        if args.plot or (args.out / "study.json").exists():  # nothing to draw when nothing was trained
            convergence.plot(args.out)
    elif args.command == "predict-hours":
        from .bench import hours

        hours.main(args.params, args.bench, args.caps, args.out)
    elif args.command == "bench-train":
        import torch

        from .bench import train as bench_train

        device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        gpu = device == "cuda"
        batch = args.batch or (512 if gpu else 16)
        if args.sweep:
            out = args.out or Path("reports/bench/sweep.json" if gpu else "reports/bench/sweep_cpu.json")
            bench_train.run_sweep(out, args.sweep_steps, args.train_size, batch, args.git_rev,
                                  stage=tuple(args.sweep_stage.split(",")), phases=tuple(args.sweep_phases.split(",")))
            return
        out = args.out or Path("reports/bench/train.json" if gpu else "reports/bench/train_cpu.json")
        cells = [tuple(int(x) for x in c.split("x")) for c in args.cells.split(",")] if args.cells else \
            bench_train.GPU_CELLS if gpu else bench_train.CPU_CELLS
        bench_train.run(out, device, cells, batch, args.warmup,
                        args.steps, args.train_size, args.git_rev, tuple(args.compile.split(",")),
                        tuple(filter(None, args.only.split(","))))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        dispatch(args)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as err:  # one line that names the problem; the traceback only with --debug
        if args.debug:
            raise
        ours = isinstance(err, ValueError | OSError)  # our errors subclass these and name the problem
        text = str(err).strip().splitlines()[0] if str(err).strip() else ""
        text = text if ours else f"{type(err).__name__}: {text} (run with --debug for the traceback)"
        print(f"error: {text}", file=sys.stderr)
        return 2 if ours else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
