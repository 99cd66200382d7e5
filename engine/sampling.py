"""Token sampling as llama.cpp's default chain does it, vectorized with numpy.

Order (llama.cpp common_sampler): logit bias -> repetition/frequency/presence penalties over
the last N tokens -> top-k -> typical -> top-p -> min-p -> temperature -> draw. Temperature
comes last, so the truncation steps see the distribution at temperature 1, as in llama.cpp.
Temperature <= 0 is greedy: the arg-max of the biased, penalized logits.

Defaults are llama.cpp's (common_params_sampling). repeat_penalty defaults to 1.0 (off), as
in llama.cpp today; llama-cpp-python still passes 1.1, its older default, and callers who
want that pass it explicitly. The same defaults here make `llamba` and `llama-cli` agree.

Costs on a 262144-entry vocabulary: one argpartition (top-k) instead of a full sort; with
top-k off, top-p sorts a growing head (256, 4096, ... tokens) until it holds top_p of the
mass; typical sampling sorts its candidates.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["Sampler", "SamplingParams", "StopStrings"]


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8
    top_k: int = 40  # <= 0: off
    top_p: float = 0.95  # >= 1: off
    min_p: float = 0.05  # <= 0: off
    typical_p: float = 1.0  # >= 1: off
    repeat_penalty: float = 1.0  # 1: off
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    penalty_last_n: int = 64  # 0: off, -1: the whole history
    logit_bias: Mapping[int, float] | None = field(default=None, hash=False)
    seed: int | None = None  # None: a fresh random seed
    min_keep: int = 0  # top-p / min-p / typical keep at least this many

    def __post_init__(self):
        checks = [
            (math.isfinite(self.temperature), "temperature must be a finite number"),
            (self.top_p >= 0.0, "top_p must be >= 0"),
            (0.0 <= self.min_p <= 1.0, "min_p must be between 0 and 1"),
            (self.typical_p >= 0.0, "typical_p must be >= 0"),
            (self.repeat_penalty > 0.0, "repeat_penalty must be > 0"),
            (math.isfinite(self.frequency_penalty), "frequency_penalty must be finite"),
            (math.isfinite(self.presence_penalty), "presence_penalty must be finite"),
            (self.penalty_last_n >= -1, "penalty_last_n must be >= -1"),
            (self.min_keep >= 0, "min_keep must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        for name in ("top_k", "penalty_last_n", "min_keep"):
            if not isinstance(getattr(self, name), (int, np.integer)):
                raise ValueError(f"{name} must be an integer")
        for tid, bias in (self.logit_bias or {}).items():
            if not isinstance(tid, (int, np.integer)) or tid < 0:
                raise ValueError(f"logit_bias key {tid!r} is not a token id")
            if math.isnan(bias):
                raise ValueError(f"logit_bias for token {tid} is NaN")

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


class Sampler:
    """Picks the next token from a logits vector; remembers recent tokens for penalties.

    sampler = Sampler(SamplingParams(seed=1), top_k=20)
    sampler.accept_many(prompt_ids)      # penalties look at the prompt too, as llama.cpp
    token = sampler.sample(logits)       # also accepted into the history
    """

    def __init__(self, params: SamplingParams | None = None, **overrides):
        params = params or SamplingParams()
        self.params = replace(params, **overrides) if overrides else params
        p = self.params
        maxlen = None if p.penalty_last_n < 0 else p.penalty_last_n
        self._history: deque[int] = deque(maxlen=maxlen)
        self.rng = np.random.default_rng(p.seed)
        bias = p.logit_bias or {}
        self._bias_ids = np.fromiter(bias.keys(), np.int64, len(bias))  # (n_bias,)
        self._bias = np.fromiter(bias.values(), np.float32, len(bias))  # (n_bias,)
        self._penalize = p.penalty_last_n != 0 and (
            p.repeat_penalty != 1.0 or p.frequency_penalty != 0.0 or p.presence_penalty != 0.0
        )

    # -- history --------------------------------------------------------------------------

    def accept(self, token: int) -> None:
        self._history.append(int(token))

    def accept_many(self, tokens: Iterable[int]) -> None:
        self._history.extend(int(t) for t in tokens)

    def reset(self, seed: int | None = None) -> None:
        """Forget the history; with a seed, restart the random stream too."""
        self._history.clear()
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    @property
    def history(self) -> list[int]:
        return list(self._history)

    # -- sampling -------------------------------------------------------------------------

    def sample(self, logits: np.ndarray, accept: bool = True) -> int:
        """The next token; `accept` adds it to the penalty history."""
        if self.params.greedy:
            token = int(np.argmax(self.adjusted_logits(logits)))
        else:
            ids, probs = self.distribution(logits)
            cdf = np.cumsum(probs, dtype=np.float64)
            i = int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right"))
            token = int(ids[min(i, len(ids) - 1)])
        if accept:
            self.accept(token)
        return token

    def adjusted_logits(self, logits: np.ndarray) -> np.ndarray:
        """(n_vocab,) float32 logits after the bias and the penalties (a copy when changed)."""
        x = np.asarray(logits)
        if x.ndim != 1 or x.size == 0:
            raise ValueError(f"logits must be a non-empty 1-D array, not shape {x.shape}")
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        if not (len(self._bias_ids) or (self._penalize and self._history)):
            return x
        x = x.copy()
        if len(self._bias_ids):
            if self._bias_ids.max() >= x.size:
                raise ValueError(f"logit_bias names token {self._bias_ids.max()} >= n_vocab")
            x[self._bias_ids] += self._bias
        if self._penalize and self._history:
            self._apply_penalties(x)
        return x

    def _apply_penalties(self, x: np.ndarray) -> None:
        p = self.params
        hist = np.fromiter(self._history, np.int64, len(self._history))
        hist = hist[(hist >= 0) & (hist < x.size)]
        ids, counts = np.unique(hist, return_counts=True)  # (n_distinct,)
        v = x[ids]
        # dividing a negative logit would make it likelier: multiply those instead
        rp = np.float32(p.repeat_penalty)
        v = np.where(v <= 0, v * rp, v / rp)
        c = counts.astype(np.float32)
        v -= c * np.float32(p.frequency_penalty) + np.float32(p.presence_penalty)
        x[ids] = v

    def distribution(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Candidate ids and the probabilities the draw uses, after the whole chain.

        Greedy settings give the single arg-max with probability 1.
        """
        x = self.adjusted_logits(logits)
        if self.params.greedy:
            return np.array([int(np.argmax(x))]), np.ones(1)
        p = self.params
        n = x.size
        if 0 < p.top_k < n:
            ids, lg = _top_k(x, p.top_k)
            is_sorted = True
        else:
            ids, lg = np.arange(n), x
            is_sorted = False
        if not np.isfinite(lg.max()):
            raise ValueError("no candidate token has a finite logit")
        if p.typical_p < 1.0:
            ids, lg = _typical(ids, lg, p.typical_p, p.min_keep)
            is_sorted = False
        if p.top_p < 1.0:
            ids, lg = _top_p(ids, lg, p.top_p, p.min_keep, is_sorted)
            is_sorted = True
        if p.min_p > 0.0:
            ids, lg = _min_p(ids, lg, p.min_p, p.min_keep, is_sorted)
        lg = lg / np.float32(p.temperature)
        return ids, _softmax(lg)


def _softmax(lg: np.ndarray) -> np.ndarray:
    e = np.exp(lg - lg.max(), dtype=np.float64)
    return e / e.sum()


def _top_k(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest logits, sorted descending (ties: lower id first)."""
    part = np.argpartition(x, x.size - k)[x.size - k :]  # (k,) unordered
    order = np.lexsort((part, -x[part]))
    ids = part[order]
    return ids, x[ids]


def _sort_desc(ids: np.ndarray, lg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-lg)
    return ids[order], lg[order]


def _typical(ids, lg, typical_p: float, min_keep: int):
    """Locally typical sampling: keep tokens whose surprise is closest to the entropy."""
    probs = _softmax(lg)
    with np.errstate(divide="ignore"):
        logp = np.log(probs)
    entropy = -np.sum(np.where(probs > 0, probs * logp, 0.0))
    order = np.argsort(np.abs(-logp - entropy))
    cum = np.cumsum(probs[order])
    # first position past typical_p that also keeps min_keep tokens; llama.cpp uses '>'
    ok = (cum > typical_p) & (np.arange(len(cum)) >= max(min_keep, 1) - 1)
    last = int(np.argmax(ok)) + 1 if ok.any() else len(cum)
    keep = order[:last]
    return ids[keep], lg[keep]


def _top_p(ids, lg, top_p: float, min_keep: int, is_sorted: bool):
    """Smallest head of the sorted distribution whose mass reaches top_p."""
    probs = _softmax(lg)
    if not is_sorted:
        # sort only a head of the distribution, growing it until it holds enough mass
        head = 256
        while head * 4 < lg.size:
            part = np.sort(np.argpartition(-lg, head - 1)[:head])
            cand = part[np.argsort(-lg[part])]
            cut = _mass_cut(probs[cand], top_p, min_keep)
            if cut is not None:
                return ids[cand[:cut]], lg[cand[:cut]]
            head *= 16
        order = np.argsort(-lg)
        ids, lg, probs = ids[order], lg[order], probs[order]
    cut = _mass_cut(probs, top_p, min_keep)
    cut = len(probs) if cut is None else cut
    return ids[:cut], lg[:cut]


def _mass_cut(sorted_probs: np.ndarray, top_p: float, min_keep: int) -> int | None:
    cum = np.cumsum(sorted_probs)
    ok = (cum >= top_p) & (np.arange(1, len(cum) + 1) >= min_keep)
    return int(np.argmax(ok)) + 1 if ok.any() else None


def _min_p(ids, lg, min_p: float, min_keep: int, is_sorted: bool):
    """Keep tokens whose probability is at least min_p times the top one's."""
    log_min_p = np.float32(math.log(min_p))
    if not is_sorted:
        keep = lg >= lg.max() + log_min_p
        if keep.sum() >= max(min_keep, 1):
            return ids[keep], lg[keep]
        ids, lg = _sort_desc(ids, lg)
    threshold = lg[0] + log_min_p
    below = (lg < threshold) & (np.arange(len(lg)) >= max(min_keep, 1))
    cut = int(np.argmax(below)) if below.any() else len(lg)
    return ids[:cut], lg[:cut]


class StopStrings:
    """Finds stop strings in streamed text, even when they span several tokens.

    push(text) returns the text that is safe to show: never a stop string, and never a tail
    that could still grow into one (that tail is held back until the next push decides it).
    After a stop string is found, `stopped` is True, `matched` names it, and the text before
    it is the last thing returned.
    """

    def __init__(self, stops: Iterable[str] | str | None):
        if isinstance(stops, str):
            stops = [stops]
        stops = list(stops or [])
        if not all(isinstance(s, str) for s in stops):
            raise TypeError("stop strings must be str")
        self.stops = [s for s in dict.fromkeys(stops) if s]
        self._held = ""
        self.stopped = False
        self.matched: str | None = None

    def push(self, text: str) -> str:
        if self.stopped:
            return ""
        buf = self._held + text
        first = None  # (position, stop)
        for s in self.stops:
            i = buf.find(s)
            if i >= 0 and (first is None or i < first[0]):
                first = (i, s)
        if first is not None:
            self.stopped, self.matched, self._held = True, first[1], ""
            return buf[: first[0]]
        hold = 0  # the longest tail of buf that begins some stop string
        for s in self.stops:
            for n in range(min(len(s) - 1, len(buf)), hold, -1):
                if buf.endswith(s[:n]):
                    hold = n
                    break
        self._held = buf[len(buf) - hold :]
        return buf[: len(buf) - hold]

    def flush(self) -> str:
        """At the end of generation: the held tail, which turned out not to be a stop."""
        held, self._held = self._held, ""
        return "" if self.stopped else held
