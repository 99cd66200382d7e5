"""`llamba quantize IN OUT TYPE`: requantize a GGUF file to a type or preset, as llama-quantize.

TYPE is a preset name (Q8_0, Q4_K_M, F16, …). The tensor types follow llama.cpp's rules, so
the result has the same types (and, for the same input, the same bytes) as llama-quantize's.
"""

from __future__ import annotations

import sys
import time

from ..engine.catalog import resolve_model
from ..engine.quantize_model import QuantizeError, quantize_model
from ..formats.quant_mix import ALIASES, PRESETS
from .errors import CLIError


def add_arguments(p) -> None:
    p.add_argument("input", help="GGUF file or catalog name")
    p.add_argument("output", help="the GGUF file to write (replaced only when complete)")
    p.add_argument("type", help=f"one of {', '.join([*PRESETS, *ALIASES])}")
    p.add_argument(
        "--allow-requantize",
        action="store_true",
        help="requantize tensors that are already quantized (loses quality)",
    )
    p.add_argument("--pure", action="store_true", help="every matrix gets TYPE: no mixture rules")
    p.add_argument("--leave-output-tensor", action="store_true", help="keep output.weight as is")
    p.add_argument("--output-tensor-type", help="type of output.weight (e.g. Q8_0)")
    p.add_argument("--token-embedding-type", help="type of token_embd.weight (e.g. Q8_0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-tensor lines")


def run(args) -> int:
    src = resolve_model(args.input)
    t0 = time.perf_counter()

    def show(step) -> None:
        if args.quiet:
            return
        shape = "x".join(str(d) for d in step.shape)
        change = (
            f"{step.old_type.name} -> {step.new_type.name}"
            if step.new_type != step.old_type
            else f"{step.old_type.name} (copied)"
        )
        print(
            f"{step.name:<36} {shape:>14}  {change:<18} "
            f"{step.old_bytes / 2**20:8.2f} -> {step.new_bytes / 2**20:8.2f} MiB",
            file=sys.stderr,
        )

    try:
        steps = quantize_model(
            src,
            args.output,
            args.type,
            allow_requantize=args.allow_requantize,
            pure=args.pure,
            output_type=args.output_tensor_type,
            token_embd_type=args.token_embedding_type,
            quantize_output=not args.leave_output_tensor,
            on_tensor=show,
        )
    except KeyError as e:  # a tensor type name that does not exist
        raise CLIError(f"unknown tensor type {e.args[0]}") from None
    except (QuantizeError, ValueError) as e:
        raise CLIError(str(e)) from None
    before = sum(s.old_bytes for s in steps) / 2**20
    after = sum(s.new_bytes for s in steps) / 2**20
    print(
        f"{args.output}: {len(steps)} tensors, {before:.2f} MiB -> {after:.2f} MiB "
        f"in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    return 0
