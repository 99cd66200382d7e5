"""`llamba bench MODEL`: prompt processing (pp) and generation (tg) speed, like llama-bench.

With --llama-cpp the same file is measured with llama.cpp (llama-cpp-python) in the same run,
the same way, and the ratios are printed: machines are noisy, so compare ratios, not times.
`llamba bench kernels` runs the kernel benchmark instead.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import re
import statistics
import time

import numpy as np

from ..engine.bench import bench
from ..engine.catalog import resolve_model
from .errors import CLIError


def add_arguments(p) -> None:
    p.add_argument("model", help="GGUF file or catalog name, or 'kernels' for the kernel benchmark")
    p.add_argument("-p", "--n-prompt", type=int, default=512, help="prompt tokens (pp)")
    p.add_argument("-n", "--n-gen", type=int, default=128, help="generated tokens (tg)")
    p.add_argument("-r", "--repetitions", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--llama-cpp", action="store_true", help="also measure llama.cpp, same run")
    p.add_argument("--json", action="store_true")
    p.add_argument("rest", nargs="*", help="arguments for `bench kernels`")


def llama_cpp_build(llama_cpp) -> list[str]:
    """The CPU features llama.cpp was compiled for ("AVX2", "AVX512", "AMX_INT8", ...)."""
    return re.findall(r"(\w+) = 1", llama_cpp.llama_print_system_info().decode())


@contextlib.contextmanager
def without_extra_buffers(llama_cpp):
    """Models loaded inside keep their weights as the file has them: no AMX or repacked copy."""
    module = llama_cpp.llama_cpp
    default = module.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p

    module.llama_model_default_params = params
    try:
        yield
    finally:
        module.llama_model_default_params = default


def llama_cpp_bench(path, n_prompt: int, n_gen: int, repetitions: int, n_threads: int) -> dict:
    """llama.cpp's pp/tg medians on the same file, timed the way engine.bench times llamba;
    "build" holds its compiled CPU features and what was turned off."""
    try:
        import llama_cpp
    except ImportError as e:
        raise CLIError("--llama-cpp needs llama-cpp-python (pip install llama-cpp-python)") from e
    build = llama_cpp_build(llama_cpp)
    # ggml's AMX matmul segfaults on quantized files on the Xeons here; its extra buffers
    # (AMX and the CPU repack) can only be turned off together
    amx = "AMX_INT8" in build
    with without_extra_buffers(llama_cpp) if amx else contextlib.nullcontext():
        llm = llama_cpp.Llama(
            str(path), n_ctx=max(n_prompt + n_gen, 16), n_batch=512, n_threads=n_threads,
            verbose=False,
        )  # fmt: skip
    rng = np.random.default_rng(0)
    results = {}
    if n_prompt > 0:
        tokens = rng.integers(llm.n_vocab(), size=n_prompt).tolist()
        rates = []
        for i in range(repetitions + 1):  # the first run warms up
            llm.reset()
            llm._ctx.kv_cache_clear()
            t = time.perf_counter()
            llm.eval(tokens)
            if i:
                rates.append(n_prompt / (time.perf_counter() - t))
        results[f"pp{n_prompt}"] = {
            "n_tokens": n_prompt,
            "tokens_per_second": statistics.median(rates),
        }
    if n_gen > 0:
        rates = []
        for i in range(repetitions + 1):
            llm.reset()
            llm._ctx.kv_cache_clear()
            llm.eval([llm.token_bos()])
            steps = rng.integers(llm.n_vocab(), size=n_gen).tolist()
            t = time.perf_counter()
            for tok in steps:
                llm.eval([tok])
            if i:
                rates.append(n_gen / (time.perf_counter() - t))
        results[f"tg{n_gen}"] = {"n_tokens": n_gen, "tokens_per_second": statistics.median(rates)}
    llm.close()
    off = " (AMX and CPU repack off: AMX crashes on quantized files)" if amx else ""
    return {"build": " ".join(build) + off, "results": results}


def run(args) -> int:
    if args.model == "kernels":
        try:
            kernels_bench = importlib.import_module(".bench_kernels", __package__)
        except ImportError:
            raise CLIError("the kernel benchmark is not available in this build") from None
        return int(kernels_bench.main(args.rest) or 0)
    path = resolve_model(args.model)
    report = bench(path, args.n_prompt, args.n_gen, args.repetitions, args.threads)
    if args.llama_cpp:
        ref = llama_cpp_bench(
            path, args.n_prompt, args.n_gen, args.repetitions, report["n_threads"]
        )
        report["llama_cpp"] = ref["results"]
        report["llama_cpp_build"] = ref["build"]
        report["ratio_to_llama_cpp"] = {
            k: report["results"][k]["tokens_per_second"] / v["tokens_per_second"]
            for k, v in ref["results"].items()
        }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{report['model']} ({report['architecture']}), {report['n_threads']} threads, "
        f"median of {report['repetitions']}"
    )
    if args.llama_cpp:
        print(f"llama.cpp built for: {report['llama_cpp_build']}")
    print(
        f"{'test':<8} {'llamba tok/s':>13}"
        + (f" {'llama.cpp tok/s':>16} {'ratio':>7}" if args.llama_cpp else "")
    )
    for k, r in report["results"].items():
        line = f"{k:<8} {r['tokens_per_second']:>13.1f}"
        if args.llama_cpp:
            line += f" {report['llama_cpp'][k]['tokens_per_second']:>16.1f} {report['ratio_to_llama_cpp'][k]:>7.2f}"
        print(line)
    return 0
