"""The generation commands: run, chat, perplexity, bench — output and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import llamba
from llamba.engine.perplexity import perplexity_of_file

pytestmark = pytest.mark.slow

TEXT = (
    "The GGUF format stores a model's weights, tokenizer and metadata in one file. "
    "Quantized types keep blocks of small integers with a scale per block, so a model "
    "needs far less memory than in float32, at a small cost in accuracy. "
) * 12


def llamba_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llamba", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_run_prints_the_greedy_continuation(smollm2_path):
    prompt = "The capital of France is"
    llm = llamba.Llama(str(smollm2_path), n_ctx=128)
    want = llm.create_completion(prompt, max_tokens=12, temperature=0)["choices"][0]["text"]
    r = llamba_cli("run", str(smollm2_path), prompt, "-n", "12", "--temp", "0", "--ctx", "128")
    assert r.returncode == 0, r.stderr
    assert r.stdout == want + "\n"


def test_chat_answers_piped_stdin(smollm2_path):
    messages = [{"role": "user", "content": "Say hello."}]
    llm = llamba.Llama(str(smollm2_path), n_ctx=256)
    want = llm.create_chat_completion(messages, max_tokens=16, temperature=0)
    r = llamba_cli(
        "chat", str(smollm2_path), "--temp", "0", "-n", "16", "--ctx", "256", stdin="Say hello.\n"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == want["choices"][0]["message"]["content"] + "\n"


def test_prompt_longer_than_context_is_one_line(smollm2_path):
    r = llamba_cli("run", str(smollm2_path), TEXT, "--ctx", "32", "-n", "4")
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_perplexity_matches_the_engine(smollm2_path, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    want = perplexity_of_file(smollm2_path, text, n_ctx=64, n_chunks=2)
    r = llamba_cli("perplexity", str(smollm2_path), str(text), "--ctx", "64", "--chunks", "2")
    assert r.returncode == 0, r.stderr
    assert f"perplexity: {want.perplexity:.4f}" in r.stdout


def test_perplexity_bad_inputs_are_one_line(smollm2_path, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("too short")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    for args in [
        (str(smollm2_path), str(tmp_path / "missing.txt")),
        (str(smollm2_path), str(short), "--ctx", "64"),
        (str(smollm2_path), str(binary)),
    ]:
        r = llamba_cli("perplexity", *args)
        assert r.returncode == 1, args
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_bench_json(smollm2_path):
    r = llamba_cli("bench", str(smollm2_path), "-p", "16", "-n", "4", "-r", "1", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["results"]["pp16"]["tokens_per_second"] > 0
    assert report["results"]["tg4"]["tokens_per_second"] > 0


def test_bench_against_llama_cpp_reports_its_build_and_ratios(smollm2_path):
    r = llamba_cli(
        "bench", str(smollm2_path), "-p", "16", "-n", "4", "-r", "1", "--llama-cpp", "--json"
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert "AVX2" in report["llama_cpp_build"].split()
    for test in ("pp16", "tg4"):
        ours = report["results"][test]["tokens_per_second"]
        theirs = report["llama_cpp"][test]["tokens_per_second"]
        assert report["ratio_to_llama_cpp"][test] == pytest.approx(ours / theirs)


def test_llama_cpp_without_extra_buffers_only_inside_the_block():
    """The bench's way around ggml's AMX crash: models loaded inside the block get no extra
    buffer types (AMX, CPU repack); the default is back afterwards."""
    import llama_cpp

    from llamba.tools.bench import without_extra_buffers

    with without_extra_buffers(llama_cpp):
        assert not llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts
    assert llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts


def test_bench_kernels_takes_its_own_options():
    """`llamba bench kernels --types …` reaches the kernel benchmark's parser (which checks
    the types before measuring anything)."""
    r = llamba_cli("bench", "kernels", "--types", "Q9_9", "--quick")
    assert r.returncode == 2
    assert "unknown types Q9_9" in r.stderr


@pytest.mark.parametrize("warm", [False, True])
def test_a_cold_kernel_cache_is_announced_and_compiled_first(
    smollm2_path, monkeypatch, capsys, warm
):
    """chat and run say why the first run takes a while, and compile the model's kernels
    (its matrix weight types, and the float ops) in worker processes before loading it;
    later runs say nothing and start no workers."""
    from llamba.formats.ggml_types import GGMLType
    from llamba.formats.gguf_reader import GGUFFile
    from llamba.kernels import cache_locator, warmup
    from llamba.tools import sampling_args

    calls = []
    monkeypatch.setattr(cache_locator, "warm_stamp", lambda key: None)  # no stamps kept
    monkeypatch.setattr(warmup, "is_warmed", lambda types: warm)
    monkeypatch.setattr(warmup, "warmup", lambda **kw: calls.append(kw) or 0.0)
    args = sampling_args_namespace()
    llm = sampling_args.load_model(args, str(smollm2_path))
    assert llm.n_ctx() == 64
    err = capsys.readouterr().err
    assert ("compiling the kernels" in err) is not warm
    if warm:
        assert calls == []
    else:
        with GGUFFile(smollm2_path) as f:  # the Q4_1 file: its matrices are Q4_1 and Q8_0
            matrix_types = {t.type for t in f.tensors.values() if len(t.shape) == 2}
        assert len(calls) == 1
        assert set(calls[0]["types"]) == matrix_types
        assert GGMLType.F32 not in calls[0]["types"]  # norm weights are vectors
        assert calls[0]["processes"] >= 1


def sampling_args_namespace():
    import argparse

    return argparse.Namespace(ctx=64, threads=None, seed=None)
