"""Engage and release the breaker the way the operator does: a ``Control`` on ``control``.

The one control path for the dashboard and ``cdb breaker``: append a ``Control`` event
(durable; the risk manager reads it through its consumer group, even after a restart)
and learn the result only from the risk manager's hash ``BREAKER_KEY``, which names the
``control_id`` it last obeyed. Nothing here writes the hash: only the risk manager may.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from cdb.bus import BREAKER_KEY, Bus
from cdb.events import Control

#: What a person asks for → the ``Control`` action the risk manager obeys.
ACTIONS = {
    ("engage", False): "engage_breaker",
    ("engage", True): "kill_switch",
    ("release", False): "release_breaker",
    # the risk manager's release clears the manual breaker and the kill switch together
    ("release", True): "release_breaker",
}


@dataclass(frozen=True)
class Sent:
    """A control appended to the stream: its id, to match the risk manager's confirmation."""

    control_id: str
    action: str
    reason: str
    entry_id: str


def read_breaker(client: redis.Redis) -> dict[str, Any] | None:
    """The risk manager's breaker hash as JSON-friendly values; ``None`` if never written.

    Shape: ``{"engaged", "manual", "drawdown", "kill_switch": bool, "reason": str,
    "control_id": str, "updated_at": int | None}``.
    """
    raw = client.hgetall(BREAKER_KEY)
    if not raw:
        return None
    fields = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }
    updated = fields.get("updated_at", "")
    return {
        **{f: fields.get(f, "0") == "1" for f in ("engaged", "manual", "drawdown", "kill_switch")},
        "reason": fields.get("reason", ""),
        "control_id": fields.get("control_id", ""),
        "updated_at": int(float(updated)) if updated else None,
    }


def send(bus: Bus, verb: str, kill_switch: bool, reason: str, source: str) -> Sent:
    """Append the control for ``verb`` (``engage`` / ``release``); raises ``ValueError``.

    ``reason`` is required (1-200 characters): every halt and release says why.
    """
    reason = " ".join(reason.split())
    if not reason:
        raise ValueError("a reason is required")
    if len(reason) > 200:
        raise ValueError("the reason is longer than 200 characters")
    action = ACTIONS[(verb, kill_switch)]
    control_id = f"{source}-{uuid.uuid4().hex[:20]}"
    event = Control(action=action, reason=reason, source=source, control_id=control_id)
    return Sent(control_id, action, reason, bus.publish(event))


def confirmed(state: dict[str, Any] | None, control_id: str) -> bool:
    """Whether the risk manager's hash names this control (it obeyed it)."""
    return state is not None and state.get("control_id") == control_id


def wait_confirmed(
    client: redis.Redis, control_id: str, timeout: float, interval: float = 0.2
) -> dict[str, Any] | None:
    """Poll the hash until it names ``control_id``; the state then, or ``None`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        state = read_breaker(client)
        if confirmed(state, control_id):
            return state
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)
