"""Shared fixtures: the real models, fetched through the catalog (as `llamba pull` does)."""

from __future__ import annotations

import pytest

from llamba.engine.catalog import pull

# llama.cpp builds the tests refuse as the oracle. A native build on an AVX-512 CPU computes
# otherwise than the AVX2 build llamba follows on every host (its exp, for one, scales by 2**n in
# one vscalefps), and its AMX matrix path segfaults on quantized models on the Xeons here. The
# README's test command builds the oracle with CMAKE_ARGS=-DGGML_NATIVE=OFF (x86-64-v3).
ORACLE_MUST_LACK = ("AVX512", "AMX_INT8")


def pytest_sessionstart(session):
    import llama_cpp

    from llamba.tools.bench import llama_cpp_build

    found = [feature for feature in ORACLE_MUST_LACK if feature in llama_cpp_build(llama_cpp)]
    if found:
        pytest.exit(
            f"llama-cpp-python was built with {', '.join(found)}; the tests compare against its "
            "AVX2 build: reinstall it with CMAKE_ARGS=-DGGML_NATIVE=OFF pip install "
            "--no-cache-dir --force-reinstall llama-cpp-python",
            returncode=1,
        )


@pytest.fixture(scope="session")
def smollm2_path():
    """SmolLM2-135M-Instruct Q4_1 (arch llama, BPE tokenizer, ChatML template)."""
    return pull("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def smollm2_f16_path():
    """SmolLM2-135M-Instruct as F16, the default chat model (made from the Q4_1 file)."""
    return pull("smollm2-135m-instruct-f16")


@pytest.fixture(scope="session")
def gemma3_path():
    """Gemma-3-270M Q4_K_M (arch gemma3, SentencePiece tokenizer, base model)."""
    return pull("gemma3-270m")


@pytest.fixture(scope="session", params=["smollm2-135m-instruct", "gemma3-270m"])
def real_model_path(request):
    """Each real model in turn."""
    return pull(request.param)
