"""Reader and writer of the CoT_benchmark text format (Feng et al. 2023).

A dataset folder holds `chain/` (whole sequences) and `decoder/` (prompt and answer only), each with
`train_data.txt` and `test_data.txt`: one sample a line, tokens separated by one space. Chain lines
end with a space, as the public code prints them. For arithmetic, whose chain is not unique, the
chain test file holds only the prompts and `chain/test_ans.txt` the answers.
"""

from __future__ import annotations

from pathlib import Path

from .base import Task

FILES = {"train": "train_data.txt", "test": "test_data.txt"}


def chain_line(tokens: list[str]) -> str:
    return "".join(t + " " for t in tokens)


def decoder_line(task: Task, tokens: list[str]) -> str:
    return " ".join(task.prompt(tokens) + [task.answer(tokens)])


def write_cot(task: Task, folder: Path, splits: dict[str, list[list[str]]]) -> None:
    """Write `splits` ({"train": [...], "test": [...]}, token strings without <eos>) into folder."""
    chain, decoder = folder / "chain", folder / "decoder"
    chain.mkdir(parents=True, exist_ok=True)
    decoder.mkdir(parents=True, exist_ok=True)
    for split, samples in splits.items():
        name = FILES[split]
        with open(decoder / name, "w") as f:
            f.writelines(decoder_line(task, s) + "\n" for s in samples)
        prompts_only = split == "test" and not task.unique_chain
        with open(chain / name, "w") as f:
            f.writelines(chain_line(task.prompt(s) if prompts_only else s) + "\n" for s in samples)
        if prompts_only:
            with open(chain / "test_ans.txt", "w") as f:
                f.writelines(task.answer(s) + "\n" for s in samples)


def read_lines(path: Path) -> list[list[str]]:
    with open(path) as f:
        return [line.split() for line in f if line.strip()]


def read_cot(folder: Path) -> dict[str, list[list[str]]]:
    """Every file of a CoT_benchmark folder as token lists, keyed like `chain/train_data.txt`.

    For a prompt-only chain test file the answers of `chain/test_ans.txt` are appended, so every
    entry is prompt ... answer and can be checked against the decoder files.
    """
    out: dict[str, list[list[str]]] = {}
    for kind in ("chain", "decoder"):
        for name in FILES.values():
            path = folder / kind / name
            if path.exists():
                out[f"{kind}/{name}"] = read_lines(path)
    answers = folder / "chain" / "test_ans.txt"
    if answers.exists():
        key = f"chain/{FILES['test']}"
        ans = read_lines(answers)
        if len(ans) != len(out.get(key, [])):
            raise ValueError(f"{answers}: {len(ans)} answers for {len(out.get(key, []))} prompts")
        out[key] = [p + a for p, a in zip(out[key], ans)]
    return out
