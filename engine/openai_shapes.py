"""Response dictionaries in the OpenAI shapes llama-cpp-python returns."""

from __future__ import annotations

import time
import uuid


def completion_id(prefix: str = "cmpl") -> str:
    return f"{prefix}-{uuid.uuid4()}"


def usage(n_prompt: int, n_completion: int) -> dict:
    return {
        "prompt_tokens": n_prompt,
        "completion_tokens": n_completion,
        "total_tokens": n_prompt + n_completion,
    }


def completion(cid: str, model: str, text: str, finish_reason: str | None, use: dict) -> dict:
    return {
        "id": cid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}],
        "usage": use,
    }


def completion_chunk(cid: str, model: str, text: str, finish_reason: str | None) -> dict:
    return {
        "id": cid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}],
    }


def chat_completion(cid: str, model: str, text: str, finish_reason: str | None, use: dict) -> dict:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": use,
    }


def chat_chunk(cid: str, model: str, delta: dict, finish_reason: str | None) -> dict:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def embeddings(model: str, vectors: list[list[float]], n_tokens: int) -> dict:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
    }
