"""The circuit breaker across the operator ↔ risk-manager boundary.

The operator asks by appending a ``Control`` event to the ``control`` stream of the
bot's own Redis (durable: a risk manager that starts later reads it from its consumer
group) and learns the truth only from the risk manager's hash ``BREAKER_KEY``. Until
that hash names the ``control_id`` sent, the condition stays Unknown with reason
``DeliveryPending``: status never claims more than the risk manager confirmed.

:func:`plan` is pure (what to send, what status to show); :class:`BreakerLink` is the thin
Redis edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cdb.bus import BREAKER_KEY, MARKET_DATA, REFUSED_KEY, Bus
from cdb.events import Control, stable_id
from cdb_operator.conditions import BREAKER, Cond, rfc3339
from cdb_operator.market import SCAN
from cdb_operator.model import CircuitBreaker


class BreakerUnreachable(Exception):
    """The bot's Redis cannot be reached: resolves itself (retried on the next poll)."""


@dataclass(frozen=True)
class Observed:
    """The risk manager's breaker, as written in ``BREAKER_KEY``."""

    engaged: bool
    manual: bool = False
    drawdown: bool = False
    kill_switch: bool = False
    reason: str = ""
    control_id: str = ""
    updated_at: int | None = None
    #: orders execution refused because of the kill switch or breaker, and the latest one
    refused_orders: int = 0
    last_refused: str = ""

    def engaged_by(self) -> list[str]:
        return [
            who
            for who, on in (
                ("manual", self.manual),
                ("risk-manager", self.drawdown),
                ("kill-switch", self.kill_switch),
            )
            if on
        ]


def _decode(raw: dict[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }


def parse_hash(raw: dict[Any, Any], refused: dict[Any, Any] | None = None) -> Observed | None:
    """Decode the hash (bytes or str fields); ``None`` when the risk manager never wrote it.

    ``refused`` is execution's ``REFUSED_KEY`` hash: how many orders the breaker or kill
    switch stopped, and the latest, as ``"<client_id> <side> <symbol>: <reason>"``.
    """
    if not raw:
        return None
    fields = _decode(raw)
    stopped = _decode(refused or {})
    count = stopped.get("count", "0")
    last = ""
    if stopped.get("client_id"):
        last = (
            f"{stopped['client_id']} {stopped.get('side', '')} {stopped.get('symbol', '')}: "
            f"{stopped.get('reason', '')}"
        )[:300]

    def flag(name: str) -> bool:
        return fields.get(name, "0") == "1"

    updated = fields.get("updated_at", "")
    return Observed(
        engaged=flag("engaged"),
        manual=flag("manual"),
        drawdown=flag("drawdown"),
        kill_switch=flag("kill_switch"),
        reason=fields.get("reason", ""),
        control_id=fields.get("control_id", ""),
        updated_at=int(float(updated)) if updated else None,
        refused_orders=int(count) if count.isdigit() else 0,
        last_refused=last,
    )


@dataclass(frozen=True)
class Send:
    """A control event to append."""

    action: str
    reason: str
    control_id: str


def plan(
    uid: str,
    generation: int | None,
    spec: CircuitBreaker,
    previous: dict[str, Any],
    observed: Observed | None,
    now: float,
    resend_after: float,
) -> tuple[Send | None, dict[str, Any]]:
    """Decide what to send and the breaker status before sending (``status.breaker``).

    A request is new when ``spec.engaged`` differs from the last one sent, or when the spec
    says halt and the risk manager, with nothing pending, reports released (safety first: a
    halted spec wins). The control id is derived from its inputs, so two racing reconciles
    send the same id. A pending request is re-sent when it was never delivered, or not
    confirmed within ``resend_after`` seconds.
    """
    status = dict(previous)
    last_requested = bool(previous.get("requested", False))
    control_id = previous.get("controlId") or None
    # Once confirmed, a request stays confirmed: a later control from someone else (the
    # dashboard, the CLI) changes the hash's control_id but does not make ours pending again.
    confirmed = bool(control_id) and (
        bool(previous.get("confirmed"))
        or (observed is not None and observed.control_id == control_id)
    )
    pending = bool(control_id) and not confirmed
    reassert = spec.engaged and not pending and observed is not None and not observed.engaged
    send: Send | None = None
    if spec.engaged != last_requested or reassert:
        control_id = stable_id(uid, generation, spec.engaged, control_id, reassert)
        status.update(
            requested=spec.engaged,
            requestedReason=spec.reason,
            controlId=control_id,
            delivered=False,
            sentAt=None,
            confirmed=False,
            error="",
        )
        confirmed, pending = False, True
    elif pending:
        sent_at = previous.get("sentAt")
        due = not previous.get("delivered") or sent_at is None or now - sent_at >= resend_after
        if not due:
            control_id = None  # nothing to send now
    if pending and control_id:
        action = "engage_breaker" if spec.engaged else "release_breaker"
        reason = spec.reason or ("halted by the operator" if spec.engaged else "released")
        send = Send(action, reason[:200], control_id)
    status["requestedReason"] = spec.reason
    status["confirmed"] = confirmed
    return send, with_observed(status, observed)


def with_observed(status: dict[str, Any], observed: Observed | None) -> dict[str, Any]:
    """Copy the risk manager's real state into the breaker status and set ``state``."""
    out = dict(status)
    if observed is None:  # not reported or not reachable: we do not know the real state
        out.update(engaged=None, engagedBy=[], updatedAt=None)
    else:
        out.update(
            engaged=observed.engaged,
            engagedBy=observed.engaged_by(),
            reason=observed.reason,
            updatedAt=observed.updated_at,
            refusedOrders=observed.refused_orders,
            lastRefused=observed.last_refused,
        )
        if out.get("controlId") and observed.control_id == out["controlId"]:
            out["confirmed"] = True
    pending = bool(out.get("controlId")) and not out.get("confirmed")
    if pending:
        out["state"] = "Pending"
    elif observed is None:
        out["state"] = "Unknown"
    else:
        out["state"] = "Engaged" if observed.engaged else "Released"
    return out


def after_send(status: dict[str, Any], ok: bool, error: str, now: float) -> dict[str, Any]:
    out = dict(status)
    if ok:
        out.update(delivered=True, sentAt=int(now), error="")
    else:
        out.update(error=error[:300])
    return out


def condition(status: dict[str, Any]) -> Cond:
    """``CircuitBreakerEngaged``: True/False only as the risk manager confirmed it."""
    wanted = "halt" if status.get("requested") else "release"
    if status.get("controlId") and not status.get("confirmed"):
        if status.get("delivered"):
            msg = (
                f"{wanted} requested (control {status['controlId']}); in the bot's Redis, "
                "waiting for the risk manager to confirm"
            )
        else:
            msg = (
                f"{wanted} requested (control {status['controlId']}); not yet delivered: "
                f"{status.get('error') or 'Redis not reached yet'}"
            )
        return Cond(BREAKER, "Unknown", "DeliveryPending", msg)
    engaged = status.get("engaged")
    if engaged is None and status.get("error"):
        since = rfc3339(status["observedAt"]) if status.get("observedAt") else "now"
        return Cond(BREAKER, "Unknown", "Unreachable", f"since {since}: {status['error']}")
    if engaged is None:
        return Cond(BREAKER, "Unknown", "NotReported", "the risk manager has not reported yet")
    reason_text = status.get("reason", "")
    if engaged:
        by = status.get("engagedBy") or []
        if "kill-switch" in by:
            reason = "KillSwitch"
        elif "risk-manager" in by:
            reason = "DrawdownTrip"
        else:
            reason = "ManualHalt"
        if not status.get("requested") and "risk-manager" in by:
            reason_text = f"{reason_text} (the drawdown trip stays until the next UTC day)"
        return Cond(
            BREAKER, "True", reason, f"engaged by {', '.join(by) or 'unknown'}: {reason_text}"
        )
    return Cond(BREAKER, "False", "Released", reason_text or "trading allowed")


@dataclass(frozen=True)
class RedisAddress:
    host: str
    port: int
    password: str | None = None
    #: Connect with TLS (an external Redis with redis.external.tls).
    tls: bool = False

    def client(self, timeout: float) -> redis.Redis:
        """A client that tries once, within ``timeout`` seconds (connect and each reply):
        the operator's polls are their own retries, and a slow one delays the others."""
        return redis.Redis(
            host=self.host,
            port=self.port,
            password=self.password,
            ssl=self.tls,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )


class BreakerLink:
    """Connects to one bot's Redis: append controls, read the breaker hash."""

    def __init__(self, address: RedisAddress, timeout: float = 3.0) -> None:
        self.client = address.client(timeout)

    def send(self, send: Send) -> str:
        event = Control(
            action=send.action, reason=send.reason, source="operator", control_id=send.control_id
        )
        try:
            return Bus(self.client, service="operator", consumer="operator").publish(event)
        except redis.RedisError as exc:
            raise BreakerUnreachable(f"cannot send control: {type(exc).__name__}: {exc}") from exc

    def market(self) -> list[tuple[Any, dict[Any, Any]]]:
        """The newest entries of the bot's ``market_data`` stream, newest first."""
        try:
            return self.client.xrevrange(MARKET_DATA, "+", "-", count=SCAN)
        except redis.RedisError as exc:
            raise BreakerUnreachable(
                f"cannot read market data: {type(exc).__name__}: {exc}"
            ) from exc

    def read(self) -> Observed | None:
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(BREAKER_KEY)
            pipe.hgetall(REFUSED_KEY)
            return parse_hash(*pipe.execute())
        except redis.RedisError as exc:
            raise BreakerUnreachable(f"cannot read breaker: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self.client.close()
