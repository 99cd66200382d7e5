"""Compile-time constants passed as kernel arguments.

`static(value)` is an object whose Numba type carries `value`; a kernel called with it
compiles (and caches) one specialization per value, and code inside can branch on the value
at typing time (an @overload or @intrinsic reads `typ.value`). The kernels use it for the
instruction set and the weight type, so each specialization holds only the code it runs.
"""

from __future__ import annotations

import functools

from numba import types
from numba.core.datamodel import models
from numba.core.imputils import lower_constant
from numba.core.typing.typeof import Purpose, typeof
from numba.extending import (
    NativeValue,
    overload,
    register_model,
    typeof_impl,
    unbox,
)


class StaticType(types.Type):
    def __init__(self, value: str | int):
        self.value = value
        super().__init__(name=f"Static[{value!r}]")


class Static:
    __slots__ = ("value",)

    def __init__(self, value: str | int):
        self.value = value

    def __repr__(self) -> str:
        return f"static({self.value!r})"


@functools.cache
def static(value: str | int) -> Static:
    return Static(value)


@functools.cache
def _static_type(value: str | int) -> StaticType:
    return StaticType(value)


@typeof_impl.register(Static)
def _typeof_static(val, c):
    # built once per value: a Numba type's construction (interning) takes microseconds, and
    # kernels called through Numba's own dispatch type their static arguments on every call
    return _static_type(val.value)


register_model(StaticType)(models.OpaqueModel)


@unbox(StaticType)
def _unbox_static(typ, obj, c):
    return NativeValue(c.context.get_constant_null(typ))


def static_dispatch(table: dict, name: str):
    """A function f(key, *args) callable from Numba code that calls table[key.value](*args).

    key is a static token, so only the chosen function is compiled into the caller.
    """

    def dispatch(key, *args):
        raise NotImplementedError(f"{name} is only callable from Numba code")

    dispatch.__name__ = dispatch.__qualname__ = name

    @overload(dispatch)
    def _dispatch(key, *args):
        if not isinstance(key, StaticType) or key.value not in table:
            return None
        fn = table[key.value]

        def impl(key, *args):
            return fn(*args)

        return impl

    return dispatch


def static_value(table: dict, name: str):
    """A function f(key) callable from Numba code giving the constant table[key.value]."""

    def value(key):
        raise NotImplementedError(f"{name} is only callable from Numba code")

    value.__name__ = value.__qualname__ = name

    @overload(value, inline="always")
    def _value(key):
        if not isinstance(key, StaticType) or key.value not in table:
            return None
        const = table[key.value]
        return lambda key: const

    return value


class DirectCall:
    """Calls the compiled specialization of a Numba dispatcher directly, by a caller's key.

    Numba types every argument on every call, which costs microseconds per static token; the
    kernels run hundreds of times per generated token with argument types the caller fixes,
    so the entry point is looked up once per `key` and then called as is. The caller must
    check its arguments: each call with a key must pass the dtypes, dimensions and layouts
    of the first call with that key (read-only vs writable inputs may differ).
    """

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher
        self._entries: dict = {}

    def __call__(self, key, *args):
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = self._entry_point(args)
        return entry(*args)

    def _entry_point(self, args):
        sig = tuple(typeof(a, Purpose.argument) for a in args)
        self.dispatcher.compile(sig)
        return self.dispatcher.overloads[sig].entry_point


@lower_constant(StaticType)
def _static_constant(context, builder, ty, pyval):
    # a static token used as a global inside a kernel carries no data either
    return context.get_constant_null(ty)
