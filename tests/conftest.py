"""Shared fixtures: the real models, fetched through the catalog (as `llamba pull` does)."""

from __future__ import annotations

import pytest

from llamba.engine.catalog import pull


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
