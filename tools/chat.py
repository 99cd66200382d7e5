"""`llamba chat [MODEL]`: chat in the terminal, streaming the reply as it is generated.

Without a model the catalog's default is used (pulled on first use). With stdin not a
terminal, the whole of stdin is one user message and the reply is printed once.
"""

from __future__ import annotations

import sys

from .sampling_args import add_model_arguments, add_sampling_arguments, load_model, sampling_kwargs

HELP = "commands: /reset clears the conversation, /exit (or Ctrl-D) quits; Ctrl-C stops a reply"


def add_arguments(p) -> None:
    p.add_argument("model", nargs="?", help="GGUF file or catalog name (default: catalog default)")
    p.add_argument("--system", help="system prompt")
    add_model_arguments(p)
    add_sampling_arguments(p)


def _stream_reply(llm, messages: list[dict], kwargs: dict, out=sys.stdout) -> str:
    parts = []
    for chunk in llm.create_chat_completion(messages=messages, stream=True, **kwargs):
        text = chunk["choices"][0]["delta"].get("content") or ""
        if text:
            parts.append(text)
            out.write(text)
            out.flush()
    out.write("\n")
    return "".join(parts)


def run(args) -> int:
    llm = load_model(args, args.model)
    kwargs = sampling_kwargs(args)
    system = [{"role": "system", "content": args.system}] if args.system else []
    if not sys.stdin.isatty():
        message = sys.stdin.read().strip()
        if message:
            _stream_reply(llm, [*system, {"role": "user", "content": message}], kwargs)
        return 0

    print(f"llamba chat — {llm.model_name}. {HELP}", file=sys.stderr)
    history: list[dict] = []
    while True:
        try:
            line = input("> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        except KeyboardInterrupt:
            print(file=sys.stderr)
            continue
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return 0
        if text == "/reset":
            history.clear()
            print("(conversation cleared)", file=sys.stderr)
            continue
        history.append({"role": "user", "content": text})
        try:
            reply = _stream_reply(llm, system + history, kwargs)
        except KeyboardInterrupt:
            print("\n(stopped)", file=sys.stderr)
            history.pop()
            continue
        history.append({"role": "assistant", "content": reply})
