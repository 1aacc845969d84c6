"""The exceptions s3exp raises.

Every error s3exp raises on purpose derives from :class:`S3ExpError`::

    S3ExpError
    ├── SpecError              a spec failed validation; ``.field`` names the path
    ├── ConfigError            a bad store URL, a missing credential, a missing bucket
    ├── SpecConflict           a different spec already exists under the same name
    ├── NotFoundError          an experiment, run or object that should exist does not
    ├── DamagedObject          a stored object does not parse or has an unknown format;
    │                          ``.key`` names it
    ├── LeaseLost              another worker took this run over; stop, write no result
    ├── RunAlreadyCompleted    another writer's result holds this attempt's key; ``.winner``
    └── StoreError             the store refused or failed a request
        ├── AlreadyExists      a create-only write (If-None-Match: *) lost: the key exists
        ├── Conflict           a compare-and-swap (If-Match) failed: the key changed or is gone
        ├── ObjectNotFound     a read of a key that does not exist
        └── Unavailable        the store kept failing after retries (5xx, SlowDown, network)

    KeyboardInterrupt
    └── Interrupted            SIGTERM/SIGINT reached a worker; its run is released as
                               ``interrupted`` (a BaseException, so that ``except
                               Exception`` in training code does not swallow it)

Store errors translated from botocore keep the original exception as ``__cause__``.
The CLI prints ``str(error)`` as one line and exits with 2 for what the user must fix
(SpecError, ConfigError, SpecConflict, NotFoundError), 3 when the store is unreachable or
refused the request (the other StoreErrors), and 4 for DamagedObject.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "ConfigError",
    "Conflict",
    "DamagedObject",
    "Interrupted",
    "LeaseLost",
    "NotFoundError",
    "ObjectNotFound",
    "RunAlreadyCompleted",
    "S3ExpError",
    "SpecConflict",
    "SpecError",
    "StoreError",
    "Unavailable",
]


class S3ExpError(Exception):
    """Base class of every error s3exp raises on purpose."""


class SpecError(S3ExpError, ValueError):
    """An experiment spec is invalid; ``field`` is the dotted path of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class ConfigError(S3ExpError, ValueError):
    """The store URL, endpoint, credentials or bucket are wrong or missing."""


class SpecConflict(S3ExpError):
    """A different spec is already stored under this experiment name."""

    def __init__(self, name: str, stored_hash: str, new_hash: str, first_difference: str) -> None:
        self.name = name
        self.stored_hash = stored_hash
        self.new_hash = new_hash
        self.first_difference = first_difference
        super().__init__(
            f"experiment {name!r} already exists with a different spec "
            f"(stored {stored_hash[:12]}, new {new_hash[:12]}; first difference at {first_difference})"
        )


class NotFoundError(S3ExpError, LookupError):
    """An experiment or run that the caller named does not exist."""


class DamagedObject(S3ExpError):
    """A stored object does not parse, lacks a field, or has a format this version does not
    know; ``key`` names it.  Nothing is deleted or rewritten automatically."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"damaged object {key}: {reason}")


class LeaseLost(S3ExpError):
    """This worker's lease on a run was taken over (it was stale); the run must stop."""

    def __init__(self, experiment: str, run_id: str, attempt: int) -> None:
        self.experiment = experiment
        self.run_id = run_id
        self.attempt = attempt
        super().__init__(f"lost the lease on {experiment}/{run_id} (attempt {attempt}): "
                         "another worker took the run over")


class RunAlreadyCompleted(S3ExpError):
    """Another attempt completed this run first; ``winner`` is the stored result record."""

    def __init__(self, experiment: str, run_id: str, winner: dict[str, object]) -> None:
        self.experiment = experiment
        self.run_id = run_id
        self.winner = winner
        super().__init__(f"{experiment}/{run_id} was already completed by attempt "
                         f"{winner.get('attempt')}")


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT reached the worker; the run is released as ``interrupted``."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by signal {signum}")


class StoreError(S3ExpError):
    """A store request was refused or failed; ``key`` is the object concerned, if any."""

    def __init__(self, message: str, key: str | None = None) -> None:
        self.key = key
        super().__init__(message)


class AlreadyExists(StoreError):
    """A create-only write lost: the key already exists."""


class Conflict(StoreError):
    """A compare-and-swap failed: the object changed since its ETag was read, or is gone."""


class ObjectNotFound(StoreError, KeyError):
    """The key does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "object not found"


class Unavailable(StoreError):
    """The store kept failing (5xx, SlowDown, connection errors) after all retries."""
