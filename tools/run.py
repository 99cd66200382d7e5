"""`llamba run MODEL PROMPT`: complete a prompt, streaming the text to stdout."""

from __future__ import annotations

import sys

from .sampling_args import add_model_arguments, add_sampling_arguments, load_model, sampling_kwargs


def add_arguments(p) -> None:
    p.add_argument("model", help="GGUF file or catalog name")
    p.add_argument("prompt", help="the text to continue ('-' reads stdin)")
    add_model_arguments(p)
    add_sampling_arguments(p)


def run(args) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    llm = load_model(args, args.model)
    kwargs = sampling_kwargs(args)
    if kwargs["max_tokens"] is None:
        kwargs["max_tokens"] = 128
    for chunk in llm.create_completion(prompt, stream=True, **kwargs):
        sys.stdout.write(chunk["choices"][0]["text"])
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0
