"""Log-probabilities of generated tokens, in the shapes llama-cpp-python returns.

Each token's log-probability is taken from the raw logits it was sampled from (before
penalties, temperature or truncation), as llama-cpp-python's `logits_to_logprobs` does:
log_softmax over the whole vocabulary.

completion: {"tokens": [str], "text_offset": [int], "token_logprobs": [float],
             "top_logprobs": [{token text: logprob}]}   (the top n, plus the chosen token)
chat:       {"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token",
             "logprob", "bytes"}]}], "refusal": None}
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .tokenizer import Tokenizer


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """(n_vocab,) float32 logits -> float32 log-probabilities."""
    x = np.asarray(logits, dtype=np.float32)
    shifted = x - x.max()
    return shifted - np.float32(np.log(np.exp(shifted, dtype=np.float64).sum()))


@dataclass
class TokenLogprob:
    token: int
    text: str  # the token's text (bytes that are not whole characters dropped)
    piece: bytes  # the token's bytes
    logprob: float | None  # None for the first token of an echoed prompt
    top: list[tuple[int, str, bytes, float]] | None  # (id, text, bytes, logprob), most likely first
    text_offset: int  # where the token's text starts in the returned text


@dataclass
class LogprobRecorder:
    """Fed the logits of every step (see) and then the token sampled from them (take)."""

    tokenizer: Tokenizer
    top_n: int
    offset: int = 0  # text offset of the first token (the prompt's length, as llama-cpp-python)
    entries: list[TokenLogprob] = field(default_factory=list)
    _logits: np.ndarray | None = None
    _bytes: bytearray = field(default_factory=bytearray)

    def see(self, logits: np.ndarray) -> None:
        self._logits = np.array(logits, dtype=np.float32)  # copied: the model reuses buffers

    def take(self, token: int) -> TokenLogprob:
        lp = log_softmax(self._logits)
        n = min(max(self.top_n, 0), lp.shape[0])
        top_ids = np.argpartition(-lp, n - 1)[:n] if n else np.empty(0, np.int64)
        # most likely first; equal log-probabilities: the larger id first, as
        # llama-cpp-python's sorted(zip(logprobs, ids), reverse=True)
        top_ids = sorted(top_ids.tolist(), key=lambda i: (float(lp[i]), i), reverse=True)
        top = [(i, *self._text(i), float(lp[i])) for i in top_ids]
        text, piece = self._text(token)
        entry = TokenLogprob(token, text, piece, float(lp[token]), top,
                             self.offset + len(self._bytes.decode("utf-8", "ignore")))  # fmt: skip
        self._bytes += piece
        self.entries.append(entry)
        return entry

    def _text(self, token: int) -> tuple[str, bytes]:
        piece = self.tokenizer.detokenize_bytes([token])
        return piece.decode("utf-8", "ignore"), piece


def prompt_logprobs(
    tokenizer: Tokenizer, tokens: list[int], scores: np.ndarray, top_n: int
) -> list[TokenLogprob]:
    """Entries for echoed prompt tokens: token i scored by the logits after token i - 1
    (scores (n, n_vocab)); the first token has none (logprob and top are None)."""
    rec = LogprobRecorder(tokenizer, top_n)
    first = rec._text(tokens[0])
    entries = [TokenLogprob(tokens[0], first[0], first[1], None, None, 0)]
    rec._bytes += first[1]
    for i in range(1, len(tokens)):
        rec.see(scores[i - 1])
        entries.append(rec.take(tokens[i]))
    return [entries[0], *rec.entries]


def completion_logprobs(entries: list[TokenLogprob]) -> dict:
    top_logprobs = []
    for e in entries:
        if e.top is None:  # the first token of an echoed prompt
            top_logprobs.append(None)
            continue
        top = {text: lp for _, text, _, lp in e.top}
        top[e.text] = e.logprob
        top_logprobs.append(top)
    return {
        "tokens": [e.text for e in entries],
        "text_offset": [e.text_offset for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": top_logprobs,
    }


def chat_logprobs(entries: list[TokenLogprob]) -> dict:
    return {
        "content": [
            {
                "token": e.text,
                "logprob": e.logprob,
                "bytes": list(e.piece),
                "top_logprobs": [
                    {"token": text, "logprob": lp, "bytes": list(piece)}
                    for _, text, piece, lp in e.top
                ],
            }
            for e in entries
        ],
        "refusal": None,
    }
