"""Per-key cooldown on event time, so one move does not produce a storm of signals.

Time is the events' own ``timestamp``, never the wall clock: a replay of the same
entries suppresses the same signals. A second signal at the *same* timestamp is
let through, because it can only be the same event redelivered (its signal id is
the same, so downstream deduplicates it); suppressing it would lose a signal whose
first publication failed.
"""

from __future__ import annotations

from collections.abc import Hashable


class Cooldown:
    """Remembers the last signal time per key (strategy, symbol)."""

    __slots__ = ("seconds", "_last")

    def __init__(self, seconds: int) -> None:
        if seconds < 0:
            raise ValueError(f"cooldown must be >= 0 seconds, got {seconds}")
        self.seconds = seconds
        self._last: dict[Hashable, int] = {}

    def allow(self, key: Hashable, timestamp: int) -> bool:
        """True (and remember ``timestamp``) unless a signal for ``key`` is too close in time.

        Distance is symmetric: an out-of-order event older than the last signal by less
        than the cooldown is suppressed too, so redelivery order cannot create a storm.
        """
        last = self._last.get(key)
        if last is None or timestamp == last or abs(timestamp - last) >= self.seconds:
            self._last[key] = timestamp
            return True
        return False

    def snapshot(self) -> dict[Hashable, int]:
        """A copy of the state, to restore when a batch's signals could not be published."""
        return dict(self._last)

    def restore(self, state: dict[Hashable, int]) -> None:
        self._last = dict(state)

    def last(self, key: Hashable) -> int | None:
        """Timestamp of the last signal let through for ``key``."""
        return self._last.get(key)
