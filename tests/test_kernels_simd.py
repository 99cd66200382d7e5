"""The explicit-SIMD layer, instruction-set dispatch, tile repacking and activation quantization.

The AVX-512 VNNI path runs in the other kernel tests only on CPUs that have it; here it is at
least compiled for such a CPU (in a subprocess targeting Zen 4) and checked to use vpdpbusd.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from llamba.formats import quants as ref
from llamba.formats.ggml_types import TYPE_INFO
from llamba.kernels import cpu_features
from llamba.kernels.repack import LAYOUTS, TILE, layout_table, tile_blocks, untile_row
from llamba.kernels.simd import AVX512_VNNI, PORTABLE
from llamba.kernels.static import static

BLOCK_TYPES = sorted(LAYOUTS, key=int)


def test_isa_selection():
    isas = cpu_features.available_isas()
    assert isas[-1] == PORTABLE and cpu_features.best_isa() == isas[0]
    assert cpu_features.isa_token() is cpu_features.isa_token(isas[0])
    with pytest.raises(ValueError, match="unknown instruction set"):
        cpu_features.isa_token("neon9")
    if AVX512_VNNI not in isas:
        with pytest.raises(ValueError, match="cannot run the avx512vnni path"):
            cpu_features.isa_token(AVX512_VNNI)


def test_static_tokens_are_shared():
    assert static(12) is static(12) and static("avx2") is not static(12)


@pytest.mark.parametrize("t", BLOCK_TYPES, ids=lambda t: t.name)
def test_repack_is_a_permutation_of_the_file_bytes(t):
    info = TYPE_INFO[t]
    rng = np.random.default_rng(int(t))
    raw = rng.integers(0, 256, (2 * TILE + 3, 3 * info.type_size), np.uint8)
    tiles = tile_blocks(raw, t)
    assert tiles.nbytes == raw.nbytes
    np.testing.assert_array_equal(tiles.tail, raw[2 * TILE :])
    table = layout_table(t)
    row = np.empty(raw.shape[1], np.uint8)
    flat = (tiles.quants.reshape(-1), tiles.scales.reshape(-1), tiles.halves.reshape(-1))
    for r in range(2 * TILE):
        untile_row(*flat, 3, table, r, info.type_size, row)
        np.testing.assert_array_equal(row, raw[r])


def test_activation_quantization_q8_k_matches_reference():
    from llamba.kernels.quantize_activations import quantize_input_q8_k

    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 512)).astype(np.float32) * np.array([[1.0], [1e-3], [50.0]])
    x[1, 256:] = 0.0  # an all-zero block
    xq, xd, _, bsums = quantize_input_q8_k(x.astype(np.float32))
    blocks = ref.quantize(x.astype(np.float32), "Q8_K").reshape(3, 2, -1)  # d f32, qs, bsums i16
    np.testing.assert_array_equal(xd.view(np.uint8).reshape(3, 2, 4), blocks[:, :, :4])
    np.testing.assert_array_equal(xq.view(np.uint8).reshape(3, 2, 256), blocks[:, :, 4:260])
    want_bsums = blocks[:, :, 260:].copy().view(np.int16).reshape(3, 32)
    np.testing.assert_array_equal(bsums, want_bsums)


def test_activation_quantization_q8_0_within_half_a_step():
    from llamba.kernels.quantize_activations import quantize_input_q8

    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 256)).astype(np.float32)
    xq, xd, xs, xsum = quantize_input_q8(x)
    d = np.abs(x).reshape(2, -1, 32).max(axis=2) / 127  # (2, 8)
    back = xq.reshape(2, -1, 32) * xd[:, :, None]
    assert np.all(np.abs(back - x.reshape(2, -1, 32)) <= d[:, :, None] * (0.5 + 127 * 2.0**-11))
    np.testing.assert_array_equal(xsum, xq.reshape(2, -1, 32).sum(axis=2))
    np.testing.assert_allclose(xs, xd * xsum, rtol=2.0**-10)


AVX512_COMPILE = textwrap.dedent(
    """
    # compiled for Zen 4, never run: this machine may lack AVX-512 (a task function compiles
    # when made; none is called here)
    import numpy as np
    from llamba.kernels.simd import isa_variant
    from llamba.kernels.static import static
    from llamba.kernels.tiled import FLOAT_BF16, float_task, one_token_task

    isa = isa_variant("avx512vnni")
    for name, qtype in (("Q8_0", 8), ("Q4_K", 12), ("Q6_K", 14), ("F16", None)):
        # the task functions (C callbacks, compiled when made)
        if qtype is not None:
            task = one_token_task(isa, static(qtype), np.float32)
        else:
            task = float_task(isa, FLOAT_BF16, np.uint16)
        asm = task._library.get_asm_str()
        print(name, asm.count("vpdpbusd"), asm.count("%zmm"))
    """
)


@pytest.mark.slow
def test_avx512_vnni_kernels_compile_for_zen4(tmp_path):
    env = dict(
        os.environ,
        NUMBA_CACHE_DIR=str(tmp_path),
        NUMBA_CPU_NAME="znver4",
        NUMBA_CPU_FEATURES="+avx512f,+avx512bw,+avx512vl,+avx512dq,+avx512vnni,+avx2,+avx,"
        "+fma,+f16c,+sse4.2,+popcnt,+bmi,+bmi2",
    )
    proc = subprocess.run(
        [sys.executable, "-c", AVX512_COMPILE], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = {
        line.split()[0]: list(map(int, line.split()[1:]))
        for line in proc.stdout.split("\n")
        if line
    }
    assert set(counts) == {"Q8_0", "Q4_K", "Q6_K", "F16"}
    for name, (n_vnni, n_zmm) in counts.items():
        assert n_zmm > 0, name
        assert (n_vnni > 0) == (name != "F16"), (name, n_vnni)
