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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="DVC stage: datasets of params.yaml's generate section")
    gen.add_argument("--params", type=Path, default=Path("params.yaml"))
    gen.add_argument("--out", type=Path, default=Path("data/datasets"))

    for stage in ("train", "evaluate", "report"):
        st = sub.add_parser(stage, help=f"DVC stage: {stage} (params.yaml's {stage} section)")
        st.add_argument("--params", type=Path, default=Path("params.yaml"))

    exp = sub.add_parser("export", help="one task and size in the CoT_benchmark text format")
    exp.add_argument("--task", required=True)
    exp.add_argument("--n", type=int, required=True)
    exp.add_argument("--train-size", type=int, required=True)
    exp.add_argument("--test-size", type=int, required=True)
    exp.add_argument("--seed", type=int, default=2023)
    exp.add_argument("--out", type=Path, required=True)
    exp.add_argument("--option", type=option, action="append", default=[], metavar="KEY=VALUE",
                     help="a task option, e.g. band=3 (repeatable)")

    bench = sub.add_parser("bench-data", help="benchmark: vectorised generators against plain Python")
    bench.add_argument("--json", type=Path, default=Path("reports/bench/data.json"))
    bench.add_argument("--full-size", type=int, default=1_000_000,
                       help="ED n=20 training samples for the end-to-end timing (0 skips it)")

    att = sub.add_parser("bench-attention", help="benchmark: attention time and memory against L")
    att.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    att.add_argument("--lengths", type=int, nargs="+", help="default: 256..65536 on the GPU, 256..4096 on the CPU")
    att.add_argument("--tokens", type=int, help="tokens per batch (default: 2**17 on the GPU, 2**13 on the CPU)")
    att.add_argument("--repeat", type=int, default=10)
    att.add_argument("--out", type=Path, help="default: reports/bench/attention.json (attention_cpu.json on CPU)")
    att.add_argument("--git-rev", help="record this revision (where the tree has no .git)")

    args = parser.parse_args(argv)
    try:
        if args.command == "generate":
            from .stages import generate

            generate.run(args.params, args.out)
        elif args.command == "train":
            from .stages import train

            train.run(args.params)
        elif args.command == "evaluate":
            from .stages import evaluate

            evaluate.run(args.params)
        elif args.command == "report":
            from .stages import report

            report.run(args.params)
        elif args.command == "export":
            from .stages import export

            export.run(args.task, args.n, args.train_size, args.test_size, args.seed, args.out,
                       **dict(args.option))
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
    except (ValueError, OSError) as err:  # our errors subclass these; the message names the problem
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
