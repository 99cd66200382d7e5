"""One compile of a kernel for every memory layout of its array arguments.

Numba compiles a function once per argument types, and an array's type includes its layout:
contiguous ('C') or any strides ('A'). A kernel that takes either whole arrays or column
views of one packed output (q, k and v from fused projections or not) compiles once per
mix, each time in full. `any_layout` compiles it once, its arrays typed 'A' (and read-only
unless written), and then closes it to further compiles: Numba converts every later
call's arrays to those types, with no extra cost per call.
"""

from __future__ import annotations

import inspect

from numba import types
from numba.core.dispatcher import Dispatcher
from numba.core.typing.typeof import typeof


class AnyLayout:
    """Calls `dispatcher`; its first call compiles the signature for every layout."""

    def __init__(self, dispatcher: Dispatcher, written: tuple[str, ...]):
        params = list(inspect.signature(dispatcher.py_func).parameters)
        unknown = set(written) - set(params)
        if unknown:
            raise ValueError(f"written arguments {sorted(unknown)} are not parameters")
        self._dispatcher = dispatcher
        self._compiled = False
        self._written = tuple(name in written for name in params)
        self.__doc__ = dispatcher.__doc__
        self.__wrapped__ = dispatcher.py_func

    def _compile(self, args) -> None:
        sig = []
        for value, written in zip(args, self._written, strict=True):
            t = typeof(value)
            if isinstance(t, types.Array):  # mutable arrays convert to read-only ones
                t = t.copy(layout="A", readonly=not written)
            sig.append(t)
        self._dispatcher.compile(tuple(sig))
        self._dispatcher.disable_compile()
        self._compiled = True

    def __call__(self, *args):
        if not self._compiled:
            self._compile(args)
        return self._dispatcher(*args)


def any_layout(*written: str):
    """Decorator for an @njit kernel: compile it once for all array layouts; `written` names
    the array arguments it writes (the others are typed read-only)."""

    def wrap(dispatcher: Dispatcher) -> AnyLayout:
        return AnyLayout(dispatcher, written)

    return wrap
