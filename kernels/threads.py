"""Multi-threaded kernels without Numba's parfors: a serial kernel over a range of tasks,
compiled as a C callback, run by Numba's thread pool.

    parallel_for(task_fn, n_tasks, argv)   from Numba code: task_fn (the address of a
                                           cfunc of signature TASK_SIG) runs on the pool's
                                           threads, each call taking a contiguous share
                                           of 0 .. n_tasks - 1; argv: the argument block
    keep_alive((a, b, ...))                after parallel_for: arrays the tasks read by address
    task_range(args, dims) -> (first, count)   inside a task function: its share
    pointer(address, dtype)                 a typed pointer (for numba.carray) to address
    start_pool()                            from Python, before a launcher compiles or loads

A `prange` kernel compiles its loop body twice over: once as the parfor's own function, and
again when that function is linked into the kernel (so that the cached kernel holds it),
plus Numba's parfor passes; a kernel of the tile set took 2.2 s instead of 1.1 s serial.
Here the task function is compiled once and the kernel that launches it is small and
serial; the launch goes through the same pool entry point (numba_parallel_for) that parfors
call, so the thread count (numba.set_num_threads) and threading layer are Numba's.

A task function has the pool's signature TASK_SIG: (args, dims, steps, data). The tasks
go out in one chunk per thread, as a parfor's schedule does (the OpenMP layer calls a task
function once per item it is handed; this way a task's set-up is paid once per thread).
args[0] is a base address 0 stepped 1 per chunk, so that the pool's offsetting yields the
chunk index, args[1] the number of chunks (stepped 0), dims (chunks, n_tasks); task_range
turns them into tasks. data points at the launcher's int64 argument block (addresses and
sizes of its arrays, which the launcher keeps alive).
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .heap import keep_freed_memory

TASK_SIG = types.void(types.voidptr, types.CPointer(types.intp), types.CPointer(types.intp),
                      types.voidptr)  # fmt: skip


def start_pool() -> None:
    """Start Numba's thread pool (once), which defines numba_parallel_for for the JIT: before
    compiling or loading code that calls parallel_for. Not at import, so that a program may
    fork before its first kernel call (some threading layers do not survive a fork). Also
    keeps freed memory for the next call (heap.py), as the first kernel call is due."""
    keep_freed_memory()
    numba.get_num_threads()


@intrinsic
def parallel_for(typingctx, task_fn, n_tasks, argv):
    if not all(isinstance(a, types.Integer) for a in (task_fn, n_tasks, argv)):
        return None
    start_pool()

    def codegen(context, builder, signature, args):
        fn, n, data = (context.cast(builder, a, t, types.int64)
                       for a, t in zip(args, signature.args, strict=True))  # fmt: skip
        i8p, i64 = ir.IntType(8).as_pointer(), ir.IntType(64)
        module = builder.module
        pool_for = cgutils.get_or_insert_function(
            module, ir.FunctionType(ir.VoidType(), [i8p] * 5 + [i64] * 3), "numba_parallel_for"
        )
        n_threads = builder.call(
            cgutils.get_or_insert_function(module, ir.FunctionType(i64, []), "get_num_threads"),
            [],
        )
        # one chunk of tasks per thread (OpenMP's pool calls a task function once per item)
        n_chunks = builder.select(builder.icmp_signed("<", n, n_threads), n, n_threads)
        n_chunks = builder.select(builder.icmp_signed("<", n_chunks, i64(1)), i64(1), n_chunks)
        bases = cgutils.alloca_once(builder, i8p, size=2)  # args: chunk index, n_chunks
        builder.store(i8p(None), bases)
        builder.store(builder.inttoptr(n_chunks, i8p), builder.gep(bases, [i64(1)]))
        dims = cgutils.alloca_once(builder, i64, size=2)  # (chunks, then n_tasks as is)
        builder.store(n_chunks, dims)
        builder.store(n, builder.gep(dims, [i64(1)]))
        steps = cgutils.alloca_once(builder, i64, size=2)
        builder.store(i64(1), steps)
        builder.store(i64(0), builder.gep(steps, [i64(1)]))
        builder.call(pool_for, [builder.inttoptr(fn, i8p), builder.bitcast(bases, i8p),
                                builder.bitcast(dims, i8p), builder.bitcast(steps, i8p),
                                builder.inttoptr(data, i8p), i64(1), i64(2),
                                n_threads])  # fmt: skip
        return context.get_dummy_value()

    return types.void(task_fn, n_tasks, argv), codegen


@intrinsic
def task_range(typingctx, args, dims):
    if args != types.voidptr or not isinstance(dims, types.CPointer):
        return None

    def codegen(context, builder, signature, a):
        i64 = ir.IntType(64)
        bases = builder.bitcast(a[0], ir.IntType(8).as_pointer().as_pointer())
        chunk = builder.ptrtoint(builder.load(bases), i64)
        n_chunks = builder.ptrtoint(builder.load(builder.gep(bases, [i64(1)])), i64)
        count, n_tasks = builder.load(a[1]), builder.load(builder.gep(a[1], [i64(1)]))
        first = builder.sdiv(builder.mul(chunk, n_tasks), n_chunks)
        end = builder.sdiv(builder.mul(builder.add(chunk, count), n_tasks), n_chunks)
        return context.make_tuple(builder, signature.return_type,
                                  [first, builder.sub(end, first)])  # fmt: skip

    return types.UniTuple(types.int64, 2)(args, dims), codegen


@intrinsic
def pointer(typingctx, address, dtype):
    """address: an integer or a voidptr."""
    if not isinstance(address, (types.Integer, types.RawPointer)):
        return None
    if not isinstance(dtype, types.NumberClass):
        return None
    ptr_type = types.CPointer(dtype.instance_type)

    def codegen(context, builder, signature, args):
        target = context.get_value_type(ptr_type)
        if isinstance(signature.args[0], types.Integer):
            return builder.inttoptr(args[0], target)
        return builder.bitcast(args[0], target)

    return ptr_type(address, dtype), codegen


@intrinsic
def keep_alive(typingctx, values):
    """Uses `values` (a tuple) and does nothing: Numba frees an array after its last use, so
    arrays a task function reads by address stay alive until this call."""
    if not isinstance(values, types.BaseTuple):
        return None

    def codegen(context, builder, signature, args):
        return context.get_dummy_value()

    return types.void(values), codegen
