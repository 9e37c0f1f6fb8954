"""What the probes decide, apart from the HTTP and Redis I/O of :mod:`cdb.runtime`.

Liveness answers "is this process wedged?" from in-process facts only (the main loop's last
tick, the threads that must stay alive), never from a dependency, so an outage of Redis or
PostgreSQL never makes the kubelet restart a pod. Readiness (``/readyz``, and ``/health``
as before) lists the dependencies that are down. :class:`OutageTracker` turns the stream of
"which dependency is down now" into the alerts of an outage that outlasts a threshold.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

#: Redis hash each service writes its readiness to (field: service name, value: JSON
#: ``{"service", "consumer", "ready", "problems", "dependencies", "at"}``); the operator
#: reads it to say which dependency a NotReady bot is waiting for.
READINESS_KEY = "cdb:readiness"
#: The dependency the bus runs on: an alert about it can only go out once it is back.
BUS = "redis"

#: Words in a service's problem text → the dependency it is about (first match wins).
_DEPENDENCY_WORDS = (
    ("postgres", "postgres"),
    ("database", "postgres"),
    ("redis", "redis"),
    ("exchange", "exchange"),
)


def dependency_of(problem: str) -> str | None:
    """The dependency a readiness problem names (``"postgres unreachable: …"`` → ``postgres``).

    Returns ``None`` for problems that are about the service itself (fail-closed states,
    standby, starting).
    """
    text = problem.lower()
    if "unreachable" not in text and "unavailable" not in text and "missing" not in text:
        return None
    for word, dependency in _DEPENDENCY_WORDS:
        if word in text:
            return dependency
    return None


def liveness_problems(
    now: float,
    heartbeat: float,
    bound_s: float,
    threads: Iterable[threading.Thread] = (),
) -> list[str]:
    """Why the process is wedged, or ``[]``: liveness never looks at a dependency.

    ``now`` and ``heartbeat`` are ``time.monotonic()`` seconds; ``bound_s`` is how long the
    main loop may go without ticking (it must exceed the longest single wait the loop makes
    on a dead dependency: client timeouts times retries plus the back-off cap).
    """
    problems = []
    age = now - heartbeat
    if age > bound_s:
        problems.append(f"main loop has not ticked for {age:.0f}s (bound {bound_s:.0f}s)")
    for thread in threads:
        if not thread.is_alive():
            problems.append(f"thread {thread.name} died")
    return problems


@dataclass(frozen=True)
class OutageNotice:
    """An alert to raise about one dependency's outage.

    ``kind`` is ``"ongoing"`` (down for ``length_s`` so far, raised while it lasts; never for
    the bus, which cannot carry it) or ``"over"`` (it was down ``length_s`` seconds and is
    back). ``started_at``/``ended_at`` are wall-clock seconds (``ended_at`` 0 while ongoing).
    """

    dependency: str
    kind: str
    length_s: float
    started_at: float
    ended_at: float = 0.0
    reason: str = ""


@dataclass
class _Outage:
    started_mono: float
    started_at: float
    reason: str
    raised: bool = False


@dataclass
class OutageTracker:
    """Follows which dependencies are down and says when an outage deserves an alert.

    Pure: the caller feeds observations with both clocks and publishes the notices.
    An outage shorter than ``threshold_s`` raises nothing; a longer one raises ``ongoing``
    once it passes the threshold (unless it is the bus) and ``over`` when it ends.
    """

    threshold_s: float
    outages: dict[str, _Outage] = field(default_factory=dict)

    def observe(self, down: dict[str, str], mono: float, wall: float) -> list[OutageNotice]:
        """``down`` maps each dependency down right now to its reason; returns the notices due."""
        notices = []
        for dependency, reason in down.items():
            outage = self.outages.get(dependency)
            if outage is None:
                outage = self.outages[dependency] = _Outage(mono, wall, reason)
            outage.reason = reason or outage.reason
            length = mono - outage.started_mono
            if not outage.raised and length >= self.threshold_s and dependency != BUS:
                outage.raised = True
                notices.append(
                    OutageNotice(dependency, "ongoing", length, outage.started_at, 0.0, reason)
                )
        for dependency in [d for d in self.outages if d not in down]:
            outage = self.outages.pop(dependency)
            length = mono - outage.started_mono
            if outage.raised or length >= self.threshold_s:
                notices.append(
                    OutageNotice(dependency, "over", length, outage.started_at, wall, outage.reason)
                )
        return notices
