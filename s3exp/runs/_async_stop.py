"""Stopping a run's body from another thread: LeaseLost or Interrupted raised in the
thread that entered ``with run:``."""

from __future__ import annotations

import ctypes
import threading

__all__ = ["AsyncStop"]


class AsyncStop:
    """Raises an exception in the thread that entered ``with run:``, from another thread
    (the heartbeat, the deadline timer), at that thread's next bytecode
    (``PyThreadState_SetAsyncExc``; a long C call such as one training step finishes
    first).  At most one exception is sent per run.

    Its own lock, held for no I/O: the heartbeat may be blocked in a renewal for as long as
    a reply takes, and the deadline must still get through.  ``close()``, called by the
    owner thread before it raises such news itself, writes a final record or leaves
    ``with run:``, cancels an exception sent and not yet delivered and lets none be sent
    after: otherwise the same news would arrive twice, the second time at any bytecode of
    ``__exit__``, outside the user's ``with`` (seen in the chaos suite), or in the middle
    of a final write.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._sent = False
        self._closed = False
        self.enabled = True
        """False: nothing is sent (the owner polls ``Run.check()`` instead)."""

    def bind(self) -> None:
        """In the thread that will receive the exception (``Run.__enter__``)."""
        with self._lock:
            self._owner = threading.get_ident()

    def send(self, exc: BaseException) -> None:
        """From any thread: raise ``exc`` in the owner, unless closed or already sent."""
        with self._lock:
            if not self.enabled or self._closed or self._sent or self._owner is None:
                return
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._owner),
                                                       ctypes.py_object(_async_class(exc)))
            self._sent = True

    def close(self) -> None:
        """In the owner: cancel an undelivered exception and send none after (elsewhere a
        no-op, so a heartbeat thread may call it on a shared path)."""
        with self._lock:
            if self._owner != threading.get_ident():
                return
            self._closed = True
            if self._sent:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._owner),
                                                           ctypes.c_void_p(0))


def _async_class(exc: BaseException) -> type[BaseException]:
    """A subclass of ``type(exc)`` whose no-argument constructor re-creates ``exc``.

    ``PyThreadState_SetAsyncExc`` raises a class and instantiates it with no arguments;
    LeaseLost and Interrupted need arguments, so raising them directly would deliver a
    TypeError instead.  ``except LeaseLost`` still catches the subclass.
    """
    base = type(exc)
    args, state = exc.args, dict(vars(exc))

    def __init__(self: BaseException) -> None:
        BaseException.__init__(self, *args)
        self.__dict__.update(state)

    return type(base.__name__, (base,), {"__init__": __init__, "__module__": base.__module__,
                                         "__qualname__": base.__qualname__})
