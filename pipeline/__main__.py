"""`python -m pipeline COMMAND`: the stages (each also its own entry point, `python -m
pipeline.stages.<stage>`, which dvc.yaml runs, so that this file is no stage's dependency) and the
commands a user of the pipeline needs. Benchmarks have their own: `python -m benchmarks`."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import yaml

from . import compose
from .execution import cli
from .execution.capacity import RUNS_PER_GPU
from .params import COMPILE_MODES

STAGES = {"generate": "datasets of params.yaml's generate section",
          "train": "every run of the sweep (params.yaml's train section)",
          "evaluate": "every run of the sweep on its test split",
          "report": "figures, tables and reports/report.md"}


def option(text: str) -> tuple[str, object]:
    """`key=value` with a YAML value (`band=3`, `under=false`, `number_range=null`)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, value = text.split("=", 1)
    return key, yaml.safe_load(value)


def how_trained(params: Path, folder: str, **train: object) -> Path:
    """`params` with these train settings (concurrency, compile, devices) set, written to `folder`: how
    runs are scheduled, compiled and spread over devices is in no run's key, so a shard may change it
    without retraining or restarting anything, and being on its command line, it is in every record
    the shard writes."""
    composed = yaml.safe_load(params.read_text())
    composed["train"].update({k: v for k, v in train.items() if v is not None})
    out = Path(folder) / "how-trained.yaml"
    out.write_text(yaml.safe_dump(composed, sort_keys=False, width=120))
    return out


def params_or_profile(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--params", type=Path, default=Path("params.yaml"), help="default: %(default)s")
    which.add_argument("--profile", help="a profile of conf/profile/, composed over the defaults (e.g. paper)")


def parameters(args: argparse.Namespace, folder: str) -> Path:
    """The parameters file a command reads: --params, or --profile composed into `folder`."""
    return compose.write(args.profile, Path(folder) / f"{args.profile}.yaml") if args.profile else args.params


def bench(command: argparse.ArgumentParser) -> None:
    command.add_argument("--bench", type=Path, nargs="+", help="throughput files of `python -m benchmarks train` "
                         "that price the runs, the nearest record in width, then length, for each (default: "
                         "benchmarks/results/throughput.json; name it too to add records to it)")


def parser() -> argparse.ArgumentParser:
    top = cli.parser("python -m pipeline", "Stages and tools of the pipeline; `dvc repro` runs the stages in order.")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", help="the stage or command to run")
    for stage, what in STAGES.items():  # listed here; their arguments are the stage modules' own
        sub.add_parser(stage, help=f"DVC stage: {what} (python -m pipeline {stage} --help)")

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
    ph = sub.add_parser("predict-hours", help="predicted GPU-hours of a profile's sweep, from measured training "
                                              "throughput (every run to the cap: an upper bound)")
    params_or_profile(ph)
    bench(ph)
    ph.add_argument("--caps", type=int, nargs="+", help="caps on sequences per run to price (default: the "
                                                        "profile's max_steps x batch_size)")
    ph.add_argument("--out", type=Path, help="also write the prediction as JSON here")
    gs = sub.add_parser("grid-status", help="where the paper's grid stands: cells trained, implied by the width "
                                            "search, failed and missing per figure, GPU-hours spent and left")
    params_or_profile(gs)
    gs.add_argument("--landed", type=Path, default=Path("reports/paper/cells.json"),
                    help="the landed cells (default: %(default)s)")
    gs.add_argument("--json", action="store_true", help="print the status as JSON")
    bench(gs)
    la = sub.add_parser("land", help="add the cells a GPU shard trained (its shard files) to reports/paper/cells.json, "
                                     "and keep its carry archive (beside each shard file) in reports/paper/carry/")
    la.add_argument("files", type=Path, nargs="+", help="shard files: {\"runs\": [landed records]}")
    la.add_argument("--landed", type=Path, default=Path("reports/paper/cells.json"), help="default: %(default)s")
    sh = sub.add_parser("shard", help="on a GPU: train and evaluate the paper grid's next missing cells that fit "
                                      "the seconds given, and write their results to one shard file")
    params_or_profile(sh)
    sh.add_argument("--seconds", type=float, required=True,
                    help="what the shard may take: it trains only runs predicted to fit, and stops training "
                         "90 s before the end to evaluate and write what finished")
    sh.add_argument("--out", type=Path, required=True, help="folder for the shard file")
    sh.add_argument("--figure", choices=["1", "2", "3"], help="only this figure's cells (default: all, in order)")
    sh.add_argument("--every-width", action="store_true",
                    help="every missing width, not only the width search's next one of each task, size and type")
    sh.add_argument("--cells", help="comma-separated run ids to train whatever their status (an implied cell, to "
                                    "check the search; a landed one, to see the spread)")
    sh.add_argument("--fill", action="store_true",
                    help="queue every cell, whether or not it fits (runs cut off are carried), and the "
                         "frontier after --cells")
    sh.add_argument("--resume-from", type=Path, metavar="ARCHIVE",
                    help="an earlier shard's carry-*.tar.gz: its runs go on from their checkpoints first "
                         "(default, unless only --cells: the one `land` kept in reports/paper/carry/)")
    sh.add_argument("--carry-mb", type=cli.positive, metavar="MB",
                    help="the most the carry archive holds, in parts of 15 MB (default: what one command of a "
                         "lent machine returns beside the shard file, 56; more lets wider runs be cut off and "
                         "carried, their parts brought back, and sent again, over several commands)")
    sh.add_argument("--concurrency", type=cli.positive, metavar="N",
                    help="train N runs at once (default: the parameters' train.concurrency; auto: up to "
                         f"{RUNS_PER_GPU} a GPU)")
    bench(sh)
    sh.add_argument("--devices", type=cli.positive, metavar="N",
                    help="train each run over N GPUs of this host with Lightning's DDP, one run at a time (in no "
                         "run's key): a run too long for the seconds on one GPU may fit; needs --scaleout")
    sh.add_argument("--scaleout", type=Path, metavar="FILE",
                    help="with --devices: the file of `python -m benchmarks scaleout --gpus N` run on this kind of "
                         "host, whose DDP speed-up over one GPU divides each run's price")
    sh.add_argument("--compile", choices=COMPILE_MODES, help="how a training step runs on the GPU (default: the "
                                                              "parameters' train.compile; auto picks by width)")
    pr = sub.add_parser("paper-report", help="the paper's report from the landed cells: reports/paper/report.md, "
                                             "cells.md and figures, implied cells drawn as such")
    params_or_profile(pr)
    pr.add_argument("--landed", type=Path, default=Path("reports/paper/cells.json"),
                    help="the landed cells (default: %(default)s)")
    pr.add_argument("--out", type=Path, default=Path("reports/paper"), help="default: %(default)s")
    pa = sub.add_parser("params", help="write the composed parameters of a profile (conf/profile/NAME.yaml over "
                                        "the defaults) to params.yaml")
    pa.add_argument("--profile", help="a profile of conf/profile/ (default: the defaults)")
    pa.add_argument("--out", type=Path, default=Path("params.yaml"), help="default: %(default)s")
    return top


def dispatch(args: argparse.Namespace) -> None:
    if args.command == "gather":
        from .stages import gather

        gather.gather(args.revisions)
    elif args.command == "export":
        from .stages import export

        export.run(args.task, args.n, args.train_size, args.test_size, args.seed, args.out, **dict(args.option))
    elif args.command == "predict-hours":
        import tempfile

        from . import hours

        with tempfile.TemporaryDirectory() as tmp:
            params = parameters(args, tmp)
            hours.main(params, args.bench, args.caps, args.out)
    elif args.command == "grid-status":
        import json
        import tempfile

        from . import grid, hours, plan

        with tempfile.TemporaryDirectory() as tmp:
            params = parameters(args, tmp)
            prices = hours.prices(params, args.bench)
            large = plan.too_large(params)  # every run's size worked out once
            state = grid.status(params, args.landed, prices, set(large))
            state["uncarried"] = {run_id: {"bytes": size, "seconds_alone": prices[run_id]}
                                  for run_id, size in plan.uncarried(params, args.landed, large).items()}
        print(json.dumps(state, indent=1) if args.json else grid.table(state))
    elif args.command == "land":
        from . import grid

        added = grid.land(args.files, args.landed)
        print(f"landed {len(added)} cells in {args.landed}" + (f": {', '.join(added)}" if added else ""))
    elif args.command == "shard":
        import shlex
        import tempfile

        from . import shard
        from .carry import CARRY_BYTES

        command = "python -m pipeline " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        with tempfile.TemporaryDirectory() as tmp:
            params = parameters(args, tmp)
            ddp = (args.devices or 1) > 1
            speedup = shard.ddp_speedup(args.scaleout, args.devices) if ddp else 1.0
            if args.concurrency or args.compile or ddp:  # over several GPUs, one run at a time
                params = how_trained(params, tmp, concurrency=args.concurrency or (1 if ddp else None),
                                     compile=args.compile, devices=args.devices if ddp else None)
            cells = [c for c in (args.cells or "").split(",") if c]
            shard.run(params, args.seconds, args.out, args.figure, args.every_width, command, cells or None,
                      args.fill, args.resume_from, bench=args.bench,
                      carry_bytes=(args.carry_mb << 20) if args.carry_mb else CARRY_BYTES, speedup=speedup)
    elif args.command == "paper-report":
        import tempfile

        from . import grid
        from .stages import report as report_stage

        with tempfile.TemporaryDirectory() as tmp:
            params = parameters(args, tmp)
            # the landed records carry their own seconds and device: no runtime folder
            records, shards = grid.landed_file(args.landed)
            states = grid.cell_states(params, records)
            implied = {c for c, s in states.items() if s == "implied"}
            begun = {r["task"] for r in records}  # a task's grid is drawn in full once it has a cell
            missing = {c for c, s in states.items() if s == "missing" and c[0] in begun}
            report_stage.run(params, args.landed, Path(tmp) / "no-runtime", args.out, implied, records, missing,
                             "the landed cells of the paper's grid (`cells.json`; each with its cost and provenance "
                             "in `cells.md`)", grid.cells_training(params, records, shards, args.landed))
            from . import hours
            from .cells import cells_report
            from .execution.io import write_text

            write_text(args.out / "cells.md", cells_report(records, hours.prices(params), shards,
                                                                    grid.carry_of(args.landed)))
    elif args.command == "params":
        compose.write(args.profile, args.out)
        print(f"{args.out}: the parameters of profile {args.profile or 'default'}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = [a for a in argv[:1] if a == "--debug"]  # `--debug STAGE ...` as well as `STAGE ... --debug`
    rest = argv[len(debug):]
    if rest and rest[0] in STAGES:
        return importlib.import_module(f"pipeline.stages.{rest[0]}").main(rest[1:] + debug)
    return cli.command(parser(), dispatch, argv)


if __name__ == "__main__":
    sys.exit(main())
