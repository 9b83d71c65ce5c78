"""How a chain is graded, shared by validation (which steers early stopping and the best
checkpoint, so it is part of training) and the test evaluation.

- token accuracy and exact match by teacher forcing (argmax) on the chain and answer tokens: every
  token after the first separator, <eos> included; exact match equals greedy decoding of the whole
  chain where the chain is unique;
- answer accuracy: the answer after free greedy generation from the prompt with the incremental
  decoder (the paper's metric for arithmetic, whose chain is not unique).
"""

from __future__ import annotations

import torch

IGNORE = -100


def chain_targets(tokens: torch.Tensor, lengths: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """Targets for inputs tokens[:, :-1]: the next token where it belongs to the chain or answer
    (position >= prompt length and < sequence length), IGNORE elsewhere."""
    target = tokens[:, 1:].clone()
    pos = torch.arange(1, tokens.shape[1], device=tokens.device)[None, :]
    keep = (pos >= prompts[:, None]) & (pos < lengths[:, None])
    return target.masked_fill(~keep, IGNORE)


def exact_match(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per sequence: every graded token (target != IGNORE) predicted right."""
    return ((pred == target) | (target == IGNORE)).all(dim=1)


def generated_answer(out: torch.Tensor, prompt_len: int | torch.Tensor,
                     eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The answer of each generated row (the token before its first generated <eos>) and whether
    there is one (an <eos> was generated after at least one token). `prompt_len`: one for all rows,
    or each row's."""
    start = torch.as_tensor(prompt_len, device=out.device).expand(len(out))[:, None]
    is_eos = (out == eos_id) & (torch.arange(out.shape[1], device=out.device) >= start)
    first = is_eos.int().argmax(1)
    valid = is_eos.any(1) & (first > start[:, 0])
    answer = out[torch.arange(len(out), device=out.device), (first - 1).clamp(min=0)]
    return answer, valid


@torch.no_grad()
def answer_correct(model, tokens: torch.Tensor, lengths: torch.Tensor, prompts: torch.Tensor,
                   eos_id: int) -> torch.Tensor:
    """Free greedy generation from each prompt (all prompt lengths in one pass); True where the token
    before the generated <eos> equals the true answer."""
    rows = torch.arange(len(lengths), device=tokens.device)
    answer = tokens[rows, lengths - 2]
    was_training = model.training
    model.eval()
    longest = int(prompts.max())
    out = model.generate(tokens[:, :longest], model.cfg.max_len, eos_id, prompt_lengths=prompts)
    model.train(was_training)
    got, valid = generated_answer(out, prompts, eos_id)
    return valid & (got == answer)
