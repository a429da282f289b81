"""The reconnection backoff: a pure policy with an injectable random source."""

from __future__ import annotations

import dataclasses
import math
import random

__all__ = ["BackoffPolicy"]


def _check_number(name: str, value: object, *, minimum: float, inclusive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"BackoffPolicy.{name} must be a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"BackoffPolicy.{name} must be finite, got {value!r}")
    if number < minimum or (not inclusive and number == minimum):
        bound = f">= {minimum}" if inclusive else f"> {minimum}"
        raise ValueError(f"BackoffPolicy.{name} must be {bound}, got {value!r}")
    return number


@dataclasses.dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Exponential backoff with jitter.

    Delay before retry ``attempt`` (0-based) is ``min(max_delay, base * factor**attempt)`` scaled by a
    factor drawn uniformly from ``[1 - jitter, 1 + jitter]`` — except that no delay ever exceeds
    ``max_delay``, jitter included: where the band would reach above it, the delay is drawn uniformly
    from ``[nominal * (1 - jitter), max_delay]`` instead (so clients retrying at the cap still spread
    out rather than all waiting exactly ``max_delay``). After ``max_retries`` retries have failed
    the manager gives up and puts the channel in ``error`` (the health check may revive it later).

    >>> BackoffPolicy().delay(0, random.Random(1))  # doctest: +SKIP
    0.93...
    """

    base: float = 1.0
    max_delay: float = 30.0
    factor: float = 2.0
    max_retries: int = 10
    jitter: float = 0.2

    def __post_init__(self) -> None:
        _check_number("base", self.base, minimum=0.0, inclusive=False)
        _check_number("max_delay", self.max_delay, minimum=0.0, inclusive=False)
        _check_number("factor", self.factor, minimum=1.0)
        _check_number("jitter", self.jitter, minimum=0.0)
        if self.jitter >= 1.0:
            raise ValueError(f"BackoffPolicy.jitter must be in [0, 1), got {self.jitter!r}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise TypeError(
                f"BackoffPolicy.max_retries must be an int, got {type(self.max_retries).__name__} "
                f"{self.max_retries!r}"
            )
        if self.max_retries < 0:
            raise ValueError(f"BackoffPolicy.max_retries must be >= 0, got {self.max_retries!r}")
        if self.max_delay < self.base:
            raise ValueError(f"BackoffPolicy.max_delay ({self.max_delay!r}) must be >= base ({self.base!r})")

    def nominal(self, attempt: int) -> float:
        """The delay before jitter: ``min(max_delay, base * factor**attempt)``."""
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
            raise ValueError(f"attempt must be an int >= 0, got {attempt!r}")
        # Compare in log space so huge attempts never overflow.
        if self.factor > 1.0 and attempt * math.log(self.factor) > math.log(self.max_delay / self.base):
            return self.max_delay
        return min(self.max_delay, self.base * self.factor**attempt)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The jittered delay (seconds) before retry ``attempt`` (0-based); never above ``max_delay``."""
        nominal = self.nominal(attempt)
        if self.jitter == 0.0:
            return nominal
        low = nominal * (1.0 - self.jitter)
        high = min(self.max_delay, nominal * (1.0 + self.jitter))
        return rng.uniform(low, high)

    def schedule(self, rng: random.Random) -> list[float]:
        """All ``max_retries`` delays, in order (handy in a notebook to see the plan)."""
        return [self.delay(n, rng) for n in range(self.max_retries)]
