"""What a Run needs from the Worker that claimed it, as a small interface.

``Run`` never reaches into ``Worker``: the worker passes itself in as ``RunHooks``.
Called from the run's own thread, except ``cancel_requested``, ``run_cancelled`` and
``heartbeat``, which the heartbeat thread calls.
"""

from __future__ import annotations

import contextlib
from typing import Literal, Protocol

__all__ = ["Outcome", "RunHooks"]

Outcome = Literal["completed", "failed", "interrupted", "lost"]


class RunHooks(Protocol):
    raise_errors: bool
    """Whether an exception of the user's body propagates out of ``with run:`` (after the
    attempt is recorded as failed) instead of being swallowed."""

    def critical(self) -> contextlib.AbstractContextManager[None]:
        """Around a final write: SIGTERM/SIGINT wait until it is done."""
        ...

    def run_ended(self, run_id: str, outcome: Outcome) -> None:
        """Count how the run ended."""
        ...

    def interrupted(self, *, cancelled: bool) -> None:
        """The run was interrupted: by a signal (the worker's loop ends) or by a cancel."""
        ...

    def cancel_requested(self, experiment: str) -> bool:
        """Whether ``experiment`` has been cancelled (one GET; may raise StoreError)."""
        ...

    def run_cancelled(self, experiment: str) -> None:
        """The heartbeat saw the cancel: claim no more runs of ``experiment``."""
        ...

    def heartbeat(self) -> None:
        """A long run's heartbeat beat: time to do periodic work (the cost record)."""
        ...
