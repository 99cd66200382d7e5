"""Generation as small functions over a Model: prefill, decode one token, and the loops.

logits = prefill(model, prompt_ids)            # reuses the cached prefix
for token in generate_tokens(model, prompt_ids, sampler):   # endless; caller stops
    ...
for piece in generate_text(model, tokenizer, prompt_ids, sampler, max_tokens=64,
                           stop=["\n\n"]):     # text pieces, stop conditions applied
    print(piece.text, end="")
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .kv_cache import ContextLengthError
from .model import Model
from .sampling import Sampler, StopStrings
from .tokenizer import Tokenizer


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def prefill(model: Model, prompt: Sequence[int]) -> np.ndarray:
    """Bring the cache to exactly `prompt` and return the last token's logits (n_vocab,).

    The longest prefix already cached is kept; at least the last token is evaluated again so
    its logits exist.
    """
    if len(prompt) == 0:
        raise ValueError("the prompt is empty: give at least one token (e.g. BOS)")
    if len(prompt) > model.n_ctx:
        raise ContextLengthError(
            f"the prompt has {len(prompt)} tokens, more than the context of {model.n_ctx}"
        )
    keep = min(common_prefix(model.cache.tokens, prompt), len(prompt) - 1)
    keep = model.rewind(keep)
    return model.eval(prompt[keep:], logits="last")


def decode_one_token(model: Model, token: int) -> np.ndarray:
    """Append one token; the logits (n_vocab,) of what follows it."""
    return model.eval([token], logits="last")


def fit_prompt(prompt: list[int], n_ctx: int, reserve: int, truncate: bool) -> list[int]:
    """The prompt, or with `truncate` its last n_ctx - reserve tokens (announced by a
    warning); a prompt that does not fit is otherwise an error."""
    room = n_ctx - max(reserve, 0)
    if len(prompt) <= n_ctx and (not truncate or len(prompt) <= room):
        return prompt
    if not truncate:
        raise ContextLengthError(
            f"the prompt has {len(prompt)} tokens, more than the context of {n_ctx}; "
            f"use a larger n_ctx or ask for truncation"
        )
    keep = max(room, 1)
    warnings.warn(
        f"prompt truncated from {len(prompt)} to its last {keep} tokens to fit n_ctx={n_ctx}",
        stacklevel=3,
    )
    return prompt[-keep:]


def generate_tokens(
    model: Model,
    prompt: Sequence[int],
    sampler: Sampler,
    accept_prompt: bool = True,
    on_logits: Callable[[np.ndarray], None] | None = None,
) -> Iterator[int]:
    """Sampled tokens after `prompt`, one at a time, without end (EOG tokens included): the
    caller decides when to stop. Ends only when the context is full. on_logits sees the raw
    logits (n_vocab,) each token is sampled from, just before it is sampled."""
    logits = prefill(model, prompt)
    if accept_prompt:
        sampler.accept_many(prompt)  # penalties see the prompt too, as llama.cpp's do
    while True:
        if on_logits is not None:
            on_logits(logits)
        token = sampler.sample(logits)
        yield token
        if model.n_past >= model.n_ctx:
            return
        logits = decode_one_token(model, token)


@dataclass
class Piece:
    """One step of text generation."""

    token: int | None  # the sampled token (None on the final, text-only flush)
    text: str  # text that became final with this step ("" while a character or a
    # possible stop string is held back)
    finish_reason: str | None = None  # "stop" or "length" on the last piece


def generate_text(
    model: Model,
    tokenizer: Tokenizer,
    prompt: Sequence[int],
    sampler: Sampler,
    max_tokens: int | None = None,
    stop: Sequence[str] | str | None = None,
    stop_at_eog: bool = True,
    special: bool = False,
    on_logits: Callable[[np.ndarray], None] | None = None,
) -> Iterator[Piece]:
    """Generate text after `prompt` until an end-of-generation token ("stop"), a stop
    string ("stop", not included in the text), max_tokens or a full context ("length")."""
    limit = model.n_ctx - len(prompt)
    if max_tokens is not None and max_tokens > 0:
        limit = min(limit, max_tokens)
    if limit <= 0:
        yield Piece(None, "", "length")
        return
    detok = tokenizer.stream(special=special)
    stops = StopStrings(stop)
    tokens = generate_tokens(model, prompt, sampler, on_logits=on_logits)
    for n, token in enumerate(tokens, start=1):
        if stop_at_eog and tokenizer.is_eog(token):
            yield Piece(token, stops.push(detok.flush()) + stops.flush(), "stop")
            return
        text = stops.push(detok.push(token))
        if stops.stopped:
            yield Piece(token, text, "stop")
            return
        if n >= limit:
            tail = stops.push(detok.flush())
            yield Piece(
                token,
                text + tail + ("" if stops.stopped else stops.flush()),
                ("stop" if stops.stopped else "length"),
            )
            return
        yield Piece(token, text)
    yield Piece(None, stops.push(detok.flush()) + stops.flush(), "length")
