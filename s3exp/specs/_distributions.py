"""Hyperparameter distributions, with the meanings W&B documents for sweep configs.

==========================  ==============================================================
``value``                   a constant (``{"value": 3}``)
``values`` / categorical    one of a list, uniformly (``{"values": [16, 32]}``)
``grid``                    every one of ``values``, enumerated (also every ``values``
                            parameter when the spec's ``method`` is ``grid``)
``int_uniform``             an integer in [min, max], both included
``uniform``                 a float in [min, max)
``q_uniform``               ``round(uniform(min, max) / q) * q``
``log_uniform``             ``exp(uniform(min, max))``: min and max are natural-log exponents
``log_uniform_values``      ``exp(uniform(log(min), log(max)))``: min and max are values
``q_log_uniform_values``    ``round(log_uniform_values / q) * q``
``normal``                  ``normal(mu, sigma)`` (defaults 0 and 1)
``q_normal``                ``round(normal(mu, sigma) / q) * q``
``log_normal``              ``exp(normal(mu, sigma))``
==========================  ==============================================================

When ``distribution`` is omitted it is inferred as W&B does: ``value`` gives constant,
``values`` gives categorical, integer ``min``/``max`` give int_uniform, otherwise uniform.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, StrictFloat, StrictInt, model_validator

__all__ = ["DISTRIBUTIONS", "Param"]

Number = StrictInt | StrictFloat

DISTRIBUTIONS = (
    "constant", "categorical", "grid", "int_uniform", "uniform", "q_uniform", "log_uniform",
    "log_uniform_values", "q_log_uniform_values", "normal", "q_normal", "log_normal",
)
DistributionName = Literal[
    "constant", "categorical", "grid", "int_uniform", "uniform", "q_uniform", "log_uniform",
    "log_uniform_values", "q_log_uniform_values", "normal", "q_normal", "log_normal",
]

_NEEDS_RANGE = {"int_uniform", "uniform", "q_uniform", "log_uniform", "log_uniform_values",
                "q_log_uniform_values"}
_GAUSSIAN = {"normal", "q_normal", "log_normal"}
_QUANTISED = {"q_uniform", "q_log_uniform_values", "q_normal"}
_ALLOWED_FIELDS: dict[str, set[str]] = {
    "constant": {"value"},
    "categorical": {"values"},
    "grid": {"values"},
    **{d: {"min", "max"} for d in _NEEDS_RANGE - _QUANTISED},
    **{d: {"min", "max", "q"} for d in _NEEDS_RANGE & _QUANTISED},
    "normal": {"mu", "sigma"},
    "log_normal": {"mu", "sigma"},
    "q_normal": {"mu", "sigma", "q"},
}


class Param(BaseModel):
    """One hyperparameter's distribution, as in a W&B sweep config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    distribution: DistributionName | None = None
    value: Any = None
    values: list[Any] | None = None
    min: Number | None = None
    max: Number | None = None
    mu: Number | None = None
    sigma: Number | None = None
    q: Number | None = None

    @model_validator(mode="after")
    def _check(self) -> Param:
        d = self.distribution or self._inferred()
        given = {f for f in ("value", "values", "min", "max", "mu", "sigma", "q")
                 if f in self.model_fields_set}
        extra = given - _ALLOWED_FIELDS[d]
        if extra:
            raise ValueError(f"{', '.join(sorted(extra))} not allowed with distribution {d!r}")
        if d == "constant" and "value" not in given:
            raise ValueError("distribution 'constant' needs 'value'")
        if d in ("categorical", "grid"):
            if not self.values:
                raise ValueError(f"distribution {d!r} needs a non-empty 'values' list")
        if d in _NEEDS_RANGE:
            if self.min is None or self.max is None:
                raise ValueError(f"distribution {d!r} needs both 'min' and 'max'")
            if self.min > self.max:
                raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
            if d == "int_uniform" and not (isinstance(self.min, int) and isinstance(self.max, int)):
                raise ValueError("int_uniform needs integer 'min' and 'max'")
            if d in ("log_uniform_values", "q_log_uniform_values") and self.min <= 0:
                raise ValueError(f"{d} needs min > 0 (got {self.min}); min and max are values, "
                                 "not exponents (see log_uniform)")
            if d == "log_uniform" and self.max > 700:
                raise ValueError(f"log_uniform max ({self.max}) overflows exp(); min and max are "
                                 "natural-log exponents (did you mean log_uniform_values?)")
        if d in _GAUSSIAN and self.sigma is not None and self.sigma <= 0:
            raise ValueError(f"sigma must be > 0 (got {self.sigma})")
        if self.q is not None and self.q <= 0:
            raise ValueError(f"q must be > 0 (got {self.q})")
        for f in ("min", "max", "mu", "sigma", "q"):
            v = getattr(self, f)
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{f} must be finite")
        if self.distribution is None:
            object.__setattr__(self, "distribution", d)
        return self

    def _inferred(self) -> DistributionName:
        if "value" in self.model_fields_set:
            return "constant"
        if self.values is not None:
            return "categorical"
        if isinstance(self.min, int) and isinstance(self.max, int):
            return "int_uniform"
        if self.mu is not None or self.sigma is not None:
            return "normal"
        return "uniform"

    @property
    def is_grid(self) -> bool:
        return self.distribution == "grid"

    def sample(self, rng: np.random.Generator) -> Any:
        """Draw one value.  Deterministic for a given generator state."""
        d = self.distribution
        lo, hi = self.min, self.max
        mu = 0.0 if self.mu is None else float(self.mu)
        sigma = 1.0 if self.sigma is None else float(self.sigma)
        q = 1.0 if self.q is None else float(self.q)
        if d == "constant":
            return self.value
        if d in ("categorical", "grid"):
            assert self.values is not None
            return self.values[int(rng.integers(len(self.values)))]
        if d == "int_uniform":
            assert isinstance(lo, int) and isinstance(hi, int)
            return int(rng.integers(lo, hi + 1))
        assert d is not None
        if d in _GAUSSIAN:
            x = float(rng.normal(mu, sigma))
            return math.exp(x) if d == "log_normal" else _quantise(x, q) if d == "q_normal" else x
        assert lo is not None and hi is not None
        if d in ("log_uniform_values", "q_log_uniform_values"):
            x = math.exp(float(rng.uniform(math.log(lo), math.log(hi))))
            return _quantise(x, q) if d == "q_log_uniform_values" else x
        x = float(rng.uniform(lo, hi))
        if d == "log_uniform":
            return math.exp(x)
        return _quantise(x, q) if d == "q_uniform" else x


def _quantise(x: float, q: float) -> float | int:
    y = round(x / q) * q
    return int(y) if float(q).is_integer() else y
