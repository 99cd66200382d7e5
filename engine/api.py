"""The public Python API, shaped like llama-cpp-python's `Llama`.

import llamba
llm = llamba.Llama("smollm2-135m-instruct", n_ctx=2048, seed=1)
out = llm.create_chat_completion(messages=[{"role": "user", "content": "Hi"}])
print(out["choices"][0]["message"]["content"])
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from . import openai_shapes as shapes
from .catalog import resolve_model
from .chat_template import ChatTemplate
from .generate import fit_prompt, generate_text, generate_tokens
from .kv_cache import ContextLengthError
from .logprobs import LogprobRecorder, chat_logprobs, completion_logprobs, prompt_logprobs
from .model import DEFAULT_N_BATCH, Model
from .sampling import Sampler, SamplingParams
from .tokenizer import Tokenizer

POOLING = ("mean", "last", "first", "none")


def _pool(hidden: np.ndarray, pooling: str) -> np.ndarray:
    """hidden (n, n_embd) -> (n_embd,) for mean/last/first, unchanged for none."""
    if pooling == "mean":
        return hidden.mean(axis=0)
    if pooling == "last":
        return hidden[-1]
    if pooling == "first":
        return hidden[0]
    return hidden


def _collect(pieces) -> tuple[str, int, str | None]:
    """Fold generated pieces into (text, tokens generated, finish reason)."""
    text, n, reason = [], 0, None
    for piece in pieces:
        n += piece.token is not None
        text.append(piece.text)
        reason = piece.finish_reason or reason
    return "".join(text), n, reason


def _with_logprobs(pieces, recorder: LogprobRecorder | None, tokenizer: Tokenizer):
    """(piece, its token's TokenLogprob or None) for each piece; end-of-generation tokens
    get none (they are not part of the text, as in llama-cpp-python)."""
    for piece in pieces:
        entry = None
        if recorder is not None and piece.token is not None and not tokenizer.is_eog(piece.token):
            entry = recorder.take(piece.token)
        yield piece, entry


def _returned(entries, text_end: int) -> list:
    """The entries whose token starts inside the returned text (a cut stop string drops
    the tokens that formed it)."""
    return [e for e in entries if e.text_offset < text_end]


class _Recorder:
    """The Model as generation sees it, recording every position's logits into `scores`
    when the Llama was made with logits_all=True."""

    def __init__(self, model: Model, scores: np.ndarray):
        self._model = model
        self._scores = scores  # (n_ctx, n_vocab)

    def eval(self, tokens, logits: str = "last"):
        start = self._model.n_past
        rows = self._model.eval(tokens, logits="all")  # (n, n_vocab)
        self._scores[start : start + len(rows)] = rows
        return None if logits == "none" else rows if logits == "all" else rows[-1]

    def __getattr__(self, name):
        return getattr(self._model, name)


class Llama:
    """A loaded model with its tokenizer, chat template and sampler."""

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        n_ctx: int | None = None,
        n_batch: int = DEFAULT_N_BATCH,
        n_threads: int | None = None,
        seed: int | None = None,
        logits_all: bool = False,
        chat_format: str | None = None,
        verbose: bool = False,
    ):
        path = resolve_model(model)
        self.model_path = str(path)
        self.verbose = verbose
        self._model = Model(path, n_ctx=n_ctx, n_batch=n_batch, n_threads=n_threads)
        self.metadata: dict[str, Any] = self._model.metadata
        self.tokenizer = Tokenizer.from_metadata(self.metadata)
        self.chat_format = chat_format
        self._chat_template: ChatTemplate | None = None
        self._seeds = np.random.default_rng(seed)  # draws one seed per generation call
        self.logits_all = logits_all
        self.scores: np.ndarray | None = None  # (n_ctx, n_vocab) with logits_all
        self._runner: Model | _Recorder = self._model
        if logits_all:
            # np.zeros reserves lazily: only rows actually written take memory
            self.scores = np.zeros((self._model.n_ctx, self._model.n_vocab), np.float32)
            self._runner = _Recorder(self._model, self.scores)
        self._last_logits: np.ndarray | None = None
        if verbose:
            m = self._model
            print(
                f"llamba: {path.name}: {m.arch_name}, n_ctx={m.n_ctx}, "
                f"n_threads={m.n_threads}, weights {m.weights_nbytes / 2**20:.0f} MiB, "
                f"KV cache {m.kv_nbytes / 2**20:.0f} MiB",
                file=sys.stderr,
            )

    # -- sizes and special tokens (llama-cpp-python's accessors) -----------------------------

    def n_ctx(self) -> int:
        return self._model.n_ctx

    def n_vocab(self) -> int:
        return self._model.n_vocab

    def n_embd(self) -> int:
        return self._model.n_embd

    def token_bos(self) -> int:
        return -1 if self.tokenizer.bos_id is None else self.tokenizer.bos_id

    def token_eos(self) -> int:
        return -1 if self.tokenizer.eos_id is None else self.tokenizer.eos_id

    @property
    def n_tokens(self) -> int:
        """Tokens in the cache."""
        return self._model.n_past

    @property
    def input_ids(self) -> np.ndarray:
        """The cached tokens, (n_tokens,) int32."""
        return np.array(self._model.cache.tokens, dtype=np.int32)

    @property
    def logits(self) -> np.ndarray | None:
        """Logits (n_vocab,) after the last evaluated token (None before any)."""
        return self._last_logits

    # -- tokens ---------------------------------------------------------------------------

    def tokenize(self, text: str | bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        """Token ids; add_bos adds the file's BOS (and EOS) when its flags ask for them;
        special recognises control tokens written in the text."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        return self.tokenizer.tokenize(text, add_special=add_bos, parse_special=special)

    def detokenize(
        self, tokens: Sequence[int], prev_tokens: Sequence[int] | None = None, special: bool = False
    ) -> bytes:
        """Bytes of `tokens` (prev_tokens, if given, is the context they follow)."""
        if prev_tokens:
            whole = self.tokenizer.detokenize_bytes([*prev_tokens, *tokens], special)
            return whole[len(self.tokenizer.detokenize_bytes(prev_tokens, special)) :]
        return self.tokenizer.detokenize_bytes(tokens, special)

    # -- evaluation -----------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the cached tokens."""
        self._model.reset()
        self._last_logits = None

    def eval(self, tokens: Sequence[int]) -> None:
        """Append tokens to the cache; logits in `logits` (and `scores` with logits_all)."""
        self._last_logits = np.array(self._runner.eval(list(tokens), logits="last"))

    def _sampler(self, seed: int | None, **params) -> Sampler:
        if seed is None:
            seed = int(self._seeds.integers(2**63))
        return Sampler(SamplingParams(seed=seed, **params))

    def generate(
        self,
        tokens: Sequence[int],
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        temp: float = 0.80,
        repeat_penalty: float = 1.0,
        reset: bool = True,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        seed: int | None = None,
        logit_bias: dict[int, float] | None = None,
    ) -> Iterator[int]:
        """Sampled tokens after `tokens`, without end: the caller stops (EOS is yielded).

        The cached prefix shared with `tokens` is reused (reset=False keeps the whole cache
        and continues after it).
        """
        prompt = list(tokens)
        if not reset:
            prompt = self._model.cache.tokens + prompt
        sampler = self._sampler(
            seed,
            temperature=temp,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            typical_p=typical_p,
            repeat_penalty=repeat_penalty,
            frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty,
            logit_bias=logit_bias,
        )
        yield from generate_tokens(self._runner, prompt, sampler)

    # -- completions ----------------------------------------------------------------------

    def _complete(
        self,
        prompt_tokens: list[int],
        max_tokens: int | None,
        stop,
        sampling: dict,
        recorder: LogprobRecorder | None = None,
    ) -> Iterator:
        """(piece, TokenLogprob or None) for each generated piece."""
        seed = sampling.pop("seed", None)
        sampler = self._sampler(seed, **sampling)
        pieces = generate_text(self._runner, self.tokenizer, prompt_tokens, sampler, max_tokens,
                               stop, on_logits=None if recorder is None else recorder.see)  # fmt: skip
        return _with_logprobs(pieces, recorder, self.tokenizer)

    def _prompt_tokens(self, prompt: str | Sequence[int], max_tokens, truncate: bool) -> list[int]:
        if isinstance(prompt, str):
            tokens = self.tokenizer.tokenize(prompt, add_special=True, parse_special=True)
            tokens = self.tokenizer.drop_double_bos(tokens)
        else:
            tokens = [int(t) for t in prompt]
        if not tokens:  # an empty prompt still needs one token to condition on
            bos = self.tokenizer.bos_id
            if bos is None:
                raise ValueError("empty prompt and the model has no BOS token")
            tokens = [bos]
        return fit_prompt(tokens, self.n_ctx(), max_tokens or 0, truncate)

    def create_completion(
        self,
        prompt: str | Sequence[int],
        max_tokens: int | None = 16,
        temperature: float = 0.8,
        top_p: float = 0.95,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        echo: bool = False,
        stop: str | list[str] | None = None,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        repeat_penalty: float = 1.0,
        top_k: int = 40,
        stream: bool = False,
        seed: int | None = None,
        logit_bias: dict[int, float] | None = None,
        logprobs: int | None = None,
        truncate: bool = False,
        model: str | None = None,
    ) -> dict | Iterator[dict]:
        """Complete a prompt: a `text_completion` dict, or with stream=True an iterator of
        chunks. max_tokens None or <= 0: until the context is full. truncate: keep the
        prompt's tail when it does not fit (announced by a warning) instead of an error.
        logprobs=N: each generated token's log-probability and the N most likely tokens
        (see engine/logprobs.py)."""
        tokens = self._prompt_tokens(prompt, max_tokens, truncate)
        sampling = dict(
            temperature=temperature, top_p=top_p, min_p=min_p, typical_p=typical_p,
            frequency_penalty=frequency_penalty, presence_penalty=presence_penalty,
            repeat_penalty=repeat_penalty, top_k=top_k, logit_bias=logit_bias, seed=seed,
        )  # fmt: skip
        prompt_text = (
            prompt if isinstance(prompt, str) else self.detokenize(tokens).decode("utf-8", "ignore")
        )
        prefix = prompt_text if echo else ""
        recorder = None
        if logprobs is not None:
            if echo and self.scores is None:
                raise ValueError(
                    "echo with logprobs needs the prompt's logits: Llama(logits_all=True)"
                )
            recorder = LogprobRecorder(self.tokenizer, logprobs, offset=len(prompt_text))
        steps = self._complete(tokens, max_tokens, stop, sampling, recorder)
        cid, name = shapes.completion_id(), model or self.model_path

        def echoed():  # the prompt's own entries, once its logits have been computed
            if recorder is None or not echo:
                return []
            return prompt_logprobs(self.tokenizer, tokens, self.scores, logprobs)

        if stream:
            return self._stream_completion(steps, cid, name, prefix, echoed)
        text, n, reason = _collect(piece for piece, _ in steps)
        result = shapes.completion(cid, name, prefix + text, reason,
                                   shapes.usage(len(tokens), n))  # fmt: skip
        if recorder is not None:
            entries = _returned(recorder.entries, len(prompt_text) + len(text))
            result["choices"][0]["logprobs"] = completion_logprobs(echoed() + entries)
        return result

    @staticmethod
    def _stream_completion(steps, cid: str, name: str, prefix: str, echoed) -> Iterator[dict]:
        steps = iter(steps)
        first = next(steps, None)  # evaluates the prompt
        if prefix:
            chunk = shapes.completion_chunk(cid, name, prefix, None)
            prompt_entries = echoed()
            if prompt_entries:
                chunk["choices"][0]["logprobs"] = completion_logprobs(prompt_entries)
            yield chunk
        if first is None:
            return
        steps = itertools.chain([first], steps)
        for piece, entry in steps:
            if piece.text or piece.finish_reason or entry is not None:
                chunk = shapes.completion_chunk(cid, name, piece.text, piece.finish_reason)
                if entry is not None:
                    chunk["choices"][0]["logprobs"] = completion_logprobs([entry])
                yield chunk

    __call__ = create_completion

    def chat_template(self) -> ChatTemplate:
        if self._chat_template is None:
            self._chat_template = ChatTemplate.from_metadata(
                self.metadata, fallback=self.chat_format
            )
        return self._chat_template

    def create_chat_completion(
        self,
        messages: list[dict],
        temperature: float = 0.2,
        top_p: float = 0.95,
        top_k: int = 40,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        stream: bool = False,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        max_tokens: int | None = None,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        repeat_penalty: float = 1.0,
        logit_bias: dict[int, float] | None = None,
        logprobs: bool = False,
        top_logprobs: int | None = None,
        truncate: bool = False,
        model: str | None = None,
    ) -> dict | Iterator[dict]:
        """Answer a conversation: a `chat.completion` dict, or with stream=True an iterator of
        `chat.completion.chunk` dicts (first a role delta, then content deltas, then the
        finish reason). logprobs=True: each token's log-probability, with the top_logprobs
        most likely tokens (OpenAI's chat shape)."""
        rendered = self.chat_template().render(messages, add_generation_prompt=True)
        tokens = fit_prompt(self.tokenizer.tokenize_chat(rendered), self.n_ctx(),
                            max_tokens or 0, truncate)  # fmt: skip
        sampling = dict(
            temperature=temperature, top_p=top_p, min_p=min_p, typical_p=typical_p,
            frequency_penalty=frequency_penalty, presence_penalty=presence_penalty,
            repeat_penalty=repeat_penalty, top_k=top_k, logit_bias=logit_bias, seed=seed,
        )  # fmt: skip
        recorder = LogprobRecorder(self.tokenizer, top_logprobs or 0) if logprobs else None
        steps = self._complete(tokens, max_tokens, stop, sampling, recorder)
        cid, name = shapes.completion_id("chatcmpl"), model or self.model_path
        if stream:
            return self._stream_chat(steps, cid, name)
        text, n, reason = _collect(piece for piece, _ in steps)
        result = shapes.chat_completion(cid, name, text, reason, shapes.usage(len(tokens), n))
        if recorder is not None:
            result["choices"][0]["logprobs"] = chat_logprobs(_returned(recorder.entries, len(text)))
        return result

    @staticmethod
    def _stream_chat(steps, cid: str, name: str) -> Iterator[dict]:
        yield shapes.chat_chunk(cid, name, {"role": "assistant"}, None)
        for piece, entry in steps:
            if piece.text or entry is not None:
                chunk = shapes.chat_chunk(cid, name, {"content": piece.text}, None)
                if entry is not None:
                    chunk["choices"][0]["logprobs"] = chat_logprobs([entry])
                yield chunk
            if piece.finish_reason:
                yield shapes.chat_chunk(cid, name, {}, piece.finish_reason)

    # -- embeddings -----------------------------------------------------------------------

    def embed(
        self,
        input: str | list[str],
        normalize: bool = False,
        truncate: bool = True,
        pooling: str = "mean",
        return_count: bool = False,
    ):
        """Pooled final hidden state (after the output norm) of each input text.

        pooling: "mean" over tokens, "last" or "first" token, or "none" (one vector per
        token). A str gives one embedding, a list one per text. truncate: cut texts longer
        than the context (else an error). return_count: also return the tokens processed.
        """
        if pooling not in POOLING:
            raise ValueError(f"pooling must be one of {', '.join(POOLING)}, got {pooling!r}")
        texts = [input] if isinstance(input, str) else list(input)
        vectors, total = [], 0
        for text in texts:
            tokens = self.tokenizer.tokenize(text, add_special=True, parse_special=False)
            if not tokens:
                raise ValueError("cannot embed an empty text")
            if len(tokens) > self.n_ctx():
                if not truncate:
                    raise ContextLengthError(
                        f"text of {len(tokens)} tokens exceeds the context of {self.n_ctx()}"
                    )
                tokens = tokens[: self.n_ctx()]
            total += len(tokens)
            self.reset()
            hidden = self._model.eval_hidden(tokens).astype(np.float64)  # (n, n_embd)
            self.reset()
            pooled = _pool(hidden, pooling)
            if normalize:
                pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
            vectors.append(pooled.tolist())
        result = vectors[0] if isinstance(input, str) else vectors
        return (result, total) if return_count else result

    def create_embedding(self, input: str | list[str], model: str | None = None) -> dict:
        """Embeddings in the OpenAI `list` shape (mean pooled, normalised)."""
        texts = [input] if isinstance(input, str) else list(input)
        vectors, n = self.embed(texts, normalize=True, return_count=True)
        return shapes.embeddings(model or self.model_path, vectors, n)

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        self._model.close()

    def __enter__(self) -> Llama:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Llama({os.path.basename(self.model_path)!r}, n_ctx={self.n_ctx()})"


__all__ = ["Llama"]
