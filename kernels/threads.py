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

A task function has the pool's signature TASK_SIG: (args, dims, steps, data). Its share
comes in as args[0] (a base address 0 stepped 1 per task, so the pool's offsetting yields
the first task index) and dims[0] (the count); data points at the launcher's int64 argument
block (addresses and sizes of its arrays, which the launcher keeps alive).
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

TASK_SIG = types.void(types.voidptr, types.CPointer(types.intp), types.CPointer(types.intp),
                      types.voidptr)  # fmt: skip


def start_pool() -> None:
    """Start Numba's thread pool (once), which defines numba_parallel_for for the JIT: before
    compiling or loading code that calls parallel_for. Not at import, so that a program may
    fork before its first kernel call (some threading layers do not survive a fork)."""
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
        base = cgutils.alloca_once(builder, i8p)  # args[0]: offset by 1 per task
        builder.store(i8p(None), base)
        dims = cgutils.alloca_once(builder, i64, size=2)  # (n_tasks, inner dimension 0)
        builder.store(n, dims)
        builder.store(i64(0), builder.gep(dims, [i64(1)]))
        steps = cgutils.alloca_once(builder, i64)
        builder.store(i64(1), steps)
        builder.call(pool_for, [builder.inttoptr(fn, i8p), builder.bitcast(base, i8p),
                                builder.bitcast(dims, i8p), builder.bitcast(steps, i8p),
                                builder.inttoptr(data, i8p), i64(1), i64(1),
                                n_threads])  # fmt: skip
        return context.get_dummy_value()

    return types.void(task_fn, n_tasks, argv), codegen


@intrinsic
def task_range(typingctx, args, dims):
    if args != types.voidptr or not isinstance(dims, types.CPointer):
        return None

    def codegen(context, builder, signature, a):
        first = builder.load(builder.bitcast(a[0], ir.IntType(8).as_pointer().as_pointer()))
        count = builder.load(a[1])
        return context.make_tuple(builder, signature.return_type,
                                  [builder.ptrtoint(first, ir.IntType(64)), count])  # fmt: skip

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
