"""`python -m benchmarks COMMAND`: the benchmarks and studies, apart from the pipeline (nothing in
`pipeline/` imports this package, so editing it leaves every DVC stage up to date). Each writes its
results, with their provenance (command, revision, device, versions), under benchmarks/results/ or
reports/schedule/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.execution import cli


def parser() -> argparse.ArgumentParser:
    top = cli.parser("python -m benchmarks", "Benchmarks and studies of the pipeline.")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", help="the benchmark to run")


    bench = sub.add_parser("data", help="benchmark: vectorised generators against plain Python")
    bench.add_argument("--json", type=Path, default=Path("benchmarks/results/data.json"),
                       help="where the results go (default: %(default)s)")
    bench.add_argument("--full-size", type=int, default=1_000_000,
                       help="ED n=20 training samples for the end-to-end timing (0 skips it)")

    att = sub.add_parser("attention", help="benchmark: attention time and memory against L")
    att.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                     help="where to time (default: the GPU if there is one)")
    att.add_argument("--lengths", type=int, nargs="+", help="default: 256..65536 on the GPU, 256..4096 on the CPU")
    att.add_argument("--tokens", type=int, help="tokens per batch (default: 2**17 on the GPU, 2**13 on the CPU)")
    att.add_argument("--repeat", type=int, default=10, help="timed repetitions per point (default: %(default)s)")
    att.add_argument("--out", type=Path, help="default: benchmarks/results/attention.json (attention_cpu.json on CPU)")
    att.add_argument("--git-rev", help="record this revision (where the tree has no .git)")
    tr = sub.add_parser("train", help="benchmark: the train stage's tokens/s against the public architecture")
    tr.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="where to time (default: the GPU if there is one)")
    tr.add_argument("--batch", type=int, help="sequences per step (default: 512 on the GPU, 16 on the CPU)")
    tr.add_argument("--warmup", type=int, default=20, help="untimed steps first (default: %(default)s)")
    tr.add_argument("--steps", type=int, default=50, help="timed steps (default: %(default)s)")
    tr.add_argument("--train-size", type=int, default=20_000, help="samples of each generated dataset")
    tr.add_argument("--out", type=Path, help="default: benchmarks/results/train.json (train_cpu.json on the CPU)")
    tr.add_argument("--git-rev", help="record this revision (where the tree has no .git)")
    tr.add_argument("--compile", default="auto",
                    help="comma-separated train.compile modes to time each cell with (default: %(default)s)")
    tr.add_argument("--cells", default="",
                    help="comma-separated WIDTHxL cells, L one of 44, 74, 212, 344, 508 (default: the reference cells)")
    tr.add_argument("--only", default="", help="comma-separated record names to time (default: every variant)")
    tr.add_argument("--sweep", action="store_true",
                    help="instead: time the train stage on a sweep of 12 small runs, sequential eager against "
                         "its defaults (writes benchmarks/results/sweep.json)")
    tr.add_argument("--sweep-steps", type=int, default=600, help="training steps of each sweep run")
    tr.add_argument("--sweep-stage", default="auto:auto",
                    help="comma-separated CONCURRENCY:COMPILE configurations of the stage to time, each a phase "
                         "(default: %(default)s, the stage's defaults)")
    tr.add_argument("--sweep-phases", default="stage,evaluate,eager",
                    help="comma-separated phases to run, of %(default)s and eager_priced (the eager leg priced "
                         "from each run's timed eager step, for run lengths it would take too long to run)")
    pk = sub.add_parser("pack", help="benchmark: 12 small models trained in one process as CUDA graphs on "
                                            "their own streams, against one after another eagerly (pack.json)")
    pk.add_argument("--steps", type=int, default=1000, help="training steps of each model (default: %(default)s)")
    pk.add_argument("--batch", type=int, help="sequences per step (default: 512 on the GPU, 8 on the CPU)")
    pk.add_argument("--out", type=Path, help="default: benchmarks/results/pack.json (pack_cpu.json on the CPU)")
    pk.add_argument("--git-rev", help="record this revision (where the tree has no .git)")
    pk.add_argument("--phases", help="comma-separated phases, of packed_compiled, packed_graphed, sequential_graphed, "
                                      "sequential_eager (the graphed ones on a GPU only; default: all but the first)")
    so = sub.add_parser("scaleout", help="benchmark: a sweep on one GPU against several, one training "
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
    so.add_argument("--out", type=Path, default=Path("benchmarks/results/scaleout.json"), help="default: %(default)s")
    so.add_argument("--git-rev", help="record this revision (where the tree has no .git)")
    st = sub.add_parser("schedule", help="the schedule study: validation accuracy against sequences seen")
    st.add_argument("--datasets", default="ed_n12,lis_n110", help="comma-separated (default: %(default)s)")
    st.add_argument("--attentions", default="standard,sparse,linear", help="comma-separated (default: %(default)s)")
    st.add_argument("--widths", default="256", help="comma-separated (default: %(default)s)")
    st.add_argument("--lrs", default="5e-4,1e-3,2e-3", help="comma-separated learning rates (default: %(default)s)")
    st.add_argument("--lr-width", type=cli.positive,
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
                                                 "not fit are left for a later run of the command")
    st.add_argument("--out", type=Path, default=Path("reports/schedule"), help="default: %(default)s")
    st.add_argument("--git-rev", help="record this revision (where the tree has no .git)")
    st.add_argument("--plot", action="store_true", help="only draw curves.png and table.md from study.json")
    return top


def dispatch(args: argparse.Namespace) -> None:
    if args.command == "data":
        from . import data_generation

        data_generation.run(args.json, args.full_size)
    elif args.command == "attention":
        import torch

        from . import attention

        device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        gpu = device == "cuda"
        lengths = args.lengths or [2**e for e in range(8, 17 if gpu else 13)]
        out = args.out or Path("benchmarks/results/attention.json" if gpu else "benchmarks/results/attention_cpu.json")
        result = attention.run(out, device, lengths, args.tokens or (2**17 if gpu else 2**13),
                               repeat=args.repeat, git=args.git_rev)
        attention.plot(result, out.with_suffix(".png"))
    elif args.command == "pack":
        import torch

        from . import pack

        gpu = torch.cuda.is_available()
        phases = pack.DEFAULT_PHASES if args.phases is None else tuple(p for p in args.phases.split(",") if p)
        out = args.out or Path("benchmarks/results/pack.json" if gpu else "benchmarks/results/pack_cpu.json")
        pack.run(out, args.steps, args.batch or (512 if gpu else 8), git=args.git_rev, phases=phases)
    elif args.command == "scaleout":
        from . import scaleout

        scaleout.run(args.out, args.gpus, args.sweep_width, args.sweep_runs, args.sweep_steps, args.ddp_width,
                     args.batch, args.warmup, args.steps, args.train_size, args.git_rev)
    elif args.command == "schedule":
        from . import schedule as convergence

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
    elif args.command == "train":
        import torch

        from . import train as bench_train

        device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        gpu = device == "cuda"
        batch = args.batch or (512 if gpu else 16)
        if args.sweep:
            out = args.out or Path("benchmarks/results/sweep.json" if gpu else "benchmarks/results/sweep_cpu.json")
            bench_train.run_sweep(out, args.sweep_steps, args.train_size, batch, args.git_rev,
                                  stage=tuple(args.sweep_stage.split(",")), phases=tuple(args.sweep_phases.split(",")))
            return
        out = args.out or Path("benchmarks/results/train.json" if gpu else "benchmarks/results/train_cpu.json")
        cells = [tuple(int(x) for x in c.split("x")) for c in args.cells.split(",")] if args.cells else \
            bench_train.GPU_CELLS if gpu else bench_train.CPU_CELLS
        bench_train.run(out, device, cells, batch, args.warmup,
                        args.steps, args.train_size, args.git_rev, tuple(args.compile.split(",")),
                        tuple(filter(None, args.only.split(","))))


def main(argv: list[str] | None = None) -> int:
    return cli.command(parser(), dispatch, argv)


if __name__ == "__main__":
    sys.exit(main())
