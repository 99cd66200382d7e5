"""Sampler against a plain, loop-by-loop reference of llama.cpp's sampler chain."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llamba.engine.sampling import Sampler, SamplingParams, StopStrings


def reference_chain(logits, params: SamplingParams, history) -> dict[int, float]:
    """llama.cpp's chain on a list of (id, logit), written as plainly as possible."""
    cand = [[i, float(v)] for i, v in enumerate(np.asarray(logits, np.float32))]
    for tid, b in (params.logit_bias or {}).items():
        cand[tid][1] += b
    last = history if params.penalty_last_n < 0 else history[-params.penalty_last_n :]
    counts = Counter(last) if params.penalty_last_n else Counter()
    for c in cand:
        n = counts.get(c[0], 0)
        if n:
            c[1] = c[1] * params.repeat_penalty if c[1] <= 0 else c[1] / params.repeat_penalty
            c[1] -= n * params.frequency_penalty + params.presence_penalty
    if params.temperature <= 0:
        return {max(cand, key=lambda c: (c[1], -c[0]))[0]: 1.0}

    def softmax(cs):
        m = max(c[1] for c in cs)
        e = [math.exp(c[1] - m) for c in cs]
        return [x / sum(e) for x in e]

    def by_logit(cs):
        return sorted(cs, key=lambda c: (-c[1], c[0]))

    if params.top_k > 0:
        cand = by_logit(cand)[: params.top_k]
    if params.typical_p < 1:
        probs = softmax(cand)
        entropy = -sum(p * math.log(p) for p in probs if p > 0)
        order = sorted(range(len(cand)), key=lambda i: abs(-math.log(probs[i]) - entropy))
        cum, keep = 0.0, len(order)
        for i, j in enumerate(order):
            cum += probs[j]
            if cum > params.typical_p and (params.min_keep == 0 or i >= params.min_keep - 1):
                keep = i + 1
                break
        cand = [cand[j] for j in order[:keep]]
    if params.top_p < 1:
        cand = by_logit(cand)
        probs = softmax(cand)
        cum, keep = 0.0, len(cand)
        for i, p in enumerate(probs):
            cum += p
            if cum >= params.top_p and i + 1 >= params.min_keep:
                keep = i + 1
                break
        cand = cand[:keep]
    if params.min_p > 0:
        cand = by_logit(cand)
        floor = cand[0][1] + math.log(params.min_p)
        keep = len(cand)
        for i in range(1, len(cand)):
            if cand[i][1] < floor and i >= params.min_keep:
                keep = i
                break
        cand = cand[:keep]
    cand = [[i, v / params.temperature] for i, v in cand]
    return dict(zip([c[0] for c in cand], softmax(cand), strict=True))


def _check(params: SamplingParams, n_vocab=3000, seed=0, history=()):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal(n_vocab) * 2.5).astype(np.float32)
    sampler = Sampler(params)
    sampler.accept_many(history)
    ids, probs = sampler.distribution(logits)
    want = reference_chain(logits, params, list(history))
    got = dict(zip(ids.tolist(), probs.tolist(), strict=True))
    assert set(got) == set(want)
    for tid, p in want.items():
        assert got[tid] == pytest.approx(p, rel=1e-4, abs=1e-9)


OFF = dict(top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0)

SINGLE_SAMPLERS = {
    "temperature": dict(OFF, temperature=0.7),
    "top_k": dict(OFF, top_k=25),
    "top_p": dict(OFF, top_p=0.6),
    "top_p_min_keep": dict(OFF, top_p=0.01, min_keep=7),
    "min_p": dict(OFF, min_p=0.2),
    "min_p_min_keep": dict(OFF, min_p=0.9, min_keep=5),
    "typical": dict(OFF, typical_p=0.5),
    "defaults": {},
    "chain": dict(top_k=300, typical_p=0.95, top_p=0.9, min_p=0.02, temperature=1.3),
    "top_k_then_min_p": dict(OFF, top_k=100, min_p=0.1, temperature=0.5),
}


@pytest.mark.parametrize("name", sorted(SINGLE_SAMPLERS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_sampler_matches_reference(name, seed):
    _check(SamplingParams(**SINGLE_SAMPLERS[name]), seed=seed)


@pytest.mark.parametrize(
    "penalties",
    [
        dict(repeat_penalty=1.3),
        dict(frequency_penalty=0.5),
        dict(presence_penalty=1.5),
        dict(repeat_penalty=1.1, frequency_penalty=0.2, presence_penalty=0.3, penalty_last_n=5),
        dict(repeat_penalty=2.0, penalty_last_n=-1),
        dict(repeat_penalty=2.0, penalty_last_n=0),
    ],
)
def test_penalties_match_reference(penalties):
    history = [5, 7, 5, 9, 11, 5, 7, 2999, 0, 42, 42, 42]
    # greedy exposes the adjusted logits through the arg-max; the full chain checks them all
    for temperature in (0.0, 1.0):
        params = SamplingParams(**dict(OFF, temperature=temperature, **penalties))
        _check(params, history=history)
    sampler = Sampler(SamplingParams(**penalties))
    sampler.accept_many(history)
    logits = np.random.default_rng(3).standard_normal(3000).astype(np.float32)
    adjusted = sampler.adjusted_logits(logits)
    want = logits.copy()
    last_n = penalties.get("penalty_last_n", 64)
    window = history if last_n < 0 else history[len(history) - last_n :] if last_n else []
    for tid, n in Counter(window).items():
        rp = penalties.get("repeat_penalty", 1.0)
        v = want[tid] * rp if want[tid] <= 0 else want[tid] / rp
        want[tid] = v - n * penalties.get("frequency_penalty", 0.0)
        want[tid] -= penalties.get("presence_penalty", 0.0)
    np.testing.assert_allclose(adjusted, want, rtol=1e-6)


def test_logit_bias():
    logits = np.zeros(100, np.float32)
    sampler = Sampler(SamplingParams(logit_bias={17: 5.0, 3: -math.inf}, temperature=0))
    assert sampler.sample(logits) == 17
    params = SamplingParams(**dict(OFF, logit_bias={3: -math.inf, 4: 1.0}))
    ids, probs = Sampler(params).distribution(logits)
    got = dict(zip(ids.tolist(), probs.tolist(), strict=True))
    assert got[3] == 0.0
    want = reference_chain(logits, params, [])
    assert got == pytest.approx(want, rel=1e-6)
    _check(SamplingParams(logit_bias={0: 3.0, 10: -2.0}, top_k=10), seed=4)


def test_greedy_is_argmax():
    rng = np.random.default_rng(5)
    for _ in range(20):
        logits = rng.standard_normal(262144).astype(np.float32)
        for temperature in (0.0, -1.0):
            sampler = Sampler(temperature=temperature, seed=None)
            assert sampler.sample(logits) == int(np.argmax(logits))


def test_top_k_one_is_argmax_whatever_the_seed():
    logits = np.random.default_rng(6).standard_normal(50000).astype(np.float32)
    for seed in range(10):
        assert Sampler(top_k=1, seed=seed).sample(logits) == int(np.argmax(logits))


def test_same_seed_same_tokens():
    logits = np.random.default_rng(7).standard_normal(262144).astype(np.float32) * 2

    def run(seed):
        sampler = Sampler(SamplingParams(seed=seed, repeat_penalty=1.1))
        return [sampler.sample(logits) for _ in range(50)]

    assert run(123) == run(123)
    assert run(123) != run(124)
    sampler = Sampler(seed=9)
    first = [sampler.sample(logits) for _ in range(20)]
    sampler.reset(seed=9)
    assert [sampler.sample(logits) for _ in range(20)] == first


def test_draws_follow_the_distribution():
    logits = np.log(np.array([0.5, 0.25, 0.15, 0.07, 0.03], np.float32))
    sampler = Sampler(SamplingParams(**dict(OFF, seed=11)))
    ids, probs = sampler.distribution(logits)
    n = 20000
    counts = Counter(sampler.sample(logits, accept=False) for _ in range(n))
    for tid, p in zip(ids.tolist(), probs.tolist(), strict=True):
        sigma = math.sqrt(n * p * (1 - p))
        assert abs(counts[tid] - n * p) < 5 * sigma


def test_large_vocabulary_paths_match_reference():
    # top-k off on a peaked 262144-entry vocabulary: the partial-sort path of top-p
    rng = np.random.default_rng(12)
    logits = (rng.standard_normal(262144) * 4).astype(np.float32)
    params = SamplingParams(top_k=0, top_p=0.9, min_p=0.01)
    ids, probs = Sampler(params).distribution(logits)
    order = np.argsort(-logits)
    p = np.exp(logits[order] - logits[order[0]], dtype=np.float64)
    p /= p.sum()
    cut = int(np.searchsorted(np.cumsum(p), 0.9)) + 1
    head = order[:cut]
    head = head[logits[head] >= logits[order[0]] + np.float32(math.log(0.01))]
    assert sorted(ids.tolist()) == sorted(head.tolist())
    q = np.exp((logits[head] - logits[head].max()) / 0.8, dtype=np.float64)
    got = dict(zip(ids.tolist(), probs.tolist(), strict=True))
    for tid, want in zip(head.tolist(), (q / q.sum()).tolist(), strict=True):
        assert got[tid] == pytest.approx(want, rel=1e-4)


def test_defaults_are_llama_cpp_defaults():
    p = SamplingParams()
    assert (p.temperature, p.top_k, p.top_p, p.min_p, p.typical_p) == (0.8, 40, 0.95, 0.05, 1.0)
    assert (p.repeat_penalty, p.penalty_last_n) == (1.0, 64)
    assert (p.frequency_penalty, p.presence_penalty) == (0.0, 0.0)


def test_bad_parameters_are_clear_errors():
    for bad in (
        dict(temperature=math.nan),
        dict(top_p=-0.1),
        dict(min_p=1.5),
        dict(repeat_penalty=0.0),
        dict(penalty_last_n=-2),
        dict(top_k=2.5),
        dict(logit_bias={-1: 1.0}),
    ):
        with pytest.raises(ValueError):
            SamplingParams(**bad)
    with pytest.raises(ValueError, match="1-D"):
        Sampler().sample(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="n_vocab"):
        Sampler(logit_bias={10: 1.0}).sample(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="finite"):
        Sampler(top_k=0).sample(np.full(5, -np.inf, np.float32))


# ---- stop strings -------------------------------------------------------------------------


def _reference_stop(pieces: list[str], stops: list[str]) -> tuple[str, bool]:
    """Generation stops at the first piece after which a stop string is complete; the text
    shown is everything before the earliest complete stop string at that moment."""
    seen = ""
    for piece in pieces:
        seen += piece
        found = [seen.find(s) for s in stops if s in seen]
        if found:
            return seen[: min(found)], True
    return seen, False


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet="ab<|>\n ", max_size=40),
    stops=st.lists(st.text(alphabet="ab<|>\n ", min_size=1, max_size=5), max_size=3),
    cuts=st.lists(st.integers(0, 40), max_size=10),
)
def test_stop_strings_across_token_boundaries(text, stops, cuts):
    pieces, prev = [], 0
    for c in sorted(set(cuts)) + [len(text)]:
        pieces.append(text[prev : max(prev, c)])
        prev = max(prev, c)
    stopper = StopStrings(stops)
    shown = ""
    for k, piece in enumerate(pieces):
        shown += stopper.push(piece)
        if stopper.stopped:
            break
        # everything not shown yet could still begin a stop string
        held = "".join(pieces[: k + 1])[len(shown) :]
        assert not held or any(s.startswith(held) for s in stops)
    if not stopper.stopped:
        shown += stopper.flush()
    assert (shown, stopper.stopped) == _reference_stop(pieces, stops)


def test_stop_string_split_over_tokens():
    stopper = StopStrings(["<|im_end|>", "\nUser:"])
    assert stopper.push("Hello") == "Hello"
    assert stopper.push(" world<|im") == " world"
    assert stopper.push("_e") == ""
    assert stopper.push("nd|>more") == ""
    assert stopper.stopped and stopper.matched == "<|im_end|>"
    assert stopper.push("ignored") == ""
    near = StopStrings("STOP")
    assert near.push("ST") == ""
    assert near.push("OP?") == ""  # found: nothing after it is shown
    false_start = StopStrings("STOP")
    assert false_start.push("STO") == ""
    assert false_start.push("RM") == "STORM"
    assert false_start.flush() == ""
