"""One backoff policy for every retry: reconnect, re-list, re-register, redeliver.

Capped exponential backoff with full jitter: attempt *n* waits a uniformly random
time in ``[0, min(cap, base * 2**n))``. Full jitter spreads many clients that lost
the same server, so they do not come back in lockstep. A server that says when to come
back (``Retry-After``) is read by :func:`retry_after`.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Delays for successive failures of one operation; ``reset()`` after a success."""

    base: float = 0.5
    cap: float = 30.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return self.rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.attempt = 0

    async def wait(self, stop: asyncio.Event | None = None) -> bool:
        """Sleep for the next delay; return early with True if ``stop`` gets set."""
        delay = self.next_delay()
        if stop is None:
            await asyncio.sleep(delay)
            return False
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except TimeoutError:
            return False
        return True


def retry_after(value: str | None, cap: float) -> float | None:
    """The seconds an HTTP ``Retry-After`` value asks a client to wait, at most ``cap``;
    None when there is none, or it is not a finite, non-negative number of seconds (an
    HTTP date is not followed)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if not 0 <= seconds < math.inf:
        return None
    return min(seconds, cap)
