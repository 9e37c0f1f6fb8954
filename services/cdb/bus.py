"""The event bus: Redis Streams with consumer groups, at-least-once, with a dead-letter stream.

Why streams and not Pub/Sub: a Pub/Sub message sent while a service is down is
gone; a stream entry waits in the service's consumer group until it is read and
acknowledged. A consumer that dies after reading leaves its entries *pending*;
it gets them again on restart (read from id ``0``), and entries pending on a
consumer that never comes back are claimed by a live one (``XAUTOCLAIM``).

Every entry has one field, ``data``, holding an event's JSON (``cdb.events``).
An entry that does not parse or validate is copied to ``dead_letter`` with the
reason, the source stream and the consumer, then acknowledged: it is never lost
and never blocks the entries behind it.

Redis may come back without the streams or the consumer groups (a restart without
persistence, ``FLUSHALL``, a failover to an empty replica). A read that finds its
group gone (``NOGROUP``) recreates every group of the consumer, raises a CRITICAL
``BUS_RESET`` alert and goes on reading: the consumer never exits over it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import redis
from pydantic import ValidationError

from cdb.events import MAX_FUTURE_S, Alert, Event, dump_event, parse_event

log = logging.getLogger(__name__)

MARKET_DATA = "market_data"
SIGNALS = "signals"
ORDERS = "orders"
ORDER_RESULT = "order_result"
ALERTS = "alerts"
HEALTH = "health"
CONTROL = "control"
DEAD_LETTER = "dead_letter"
#: The ML advisor's shadow signals: read by the persistence writer only, never by risk/execution.
ML_SIGNALS = "ml_signals"
STREAMS = (MARKET_DATA, SIGNALS, ORDERS, ORDER_RESULT, ALERTS, HEALTH, CONTROL, ML_SIGNALS)

#: Which stream each event type travels on. One stream may carry several types.
STREAM_OF_TYPE: dict[str, str] = {
    "market_data": MARKET_DATA,
    "market_status": MARKET_DATA,
    "signal": SIGNALS,
    "ml_signal": ML_SIGNALS,
    "order": ORDERS,
    "order_result": ORDER_RESULT,
    "alert": ALERTS,
    "health": HEALTH,
    "control": CONTROL,
    "breaker_state": CONTROL,
}

#: Event types accepted on each stream; anything else is dead-lettered.
TYPES_OF_STREAM: dict[str, frozenset[str]] = {
    s: frozenset(t for t, st in STREAM_OF_TYPE.items() if st == s) for s in STREAMS
}

#: Redis key holding the risk manager's current breaker state (a hash), read by the operator.
BREAKER_KEY = "cdb:risk:breaker"
#: Redis key holding the symbols the risk manager's book holds (a JSON list), read by the
#: feed so a held symbol is always priced. Rewritten from the book (rebuilt from
#: PostgreSQL at every start) on every change and every 10 s, so a flushed Redis has it
#: back within seconds.
HELD_KEY = "cdb:risk:held"
#: Redis key (a hash) where execution counts the orders the kill switch or breaker refused
#: and describes the latest (``count``, ``client_id``, ``symbol``, ``side``, ``reason``,
#: ``at``); the operator shows it on the TradingBot's ``status.breaker``.
REFUSED_KEY = "cdb:execution:refused"


class Delivery(NamedTuple):
    """One validated entry read from a stream, to be acknowledged after handling.

    A named tuple rather than a frozen dataclass: one is made per entry on every
    service's hot path, and a tuple is built in C (~0.4 µs against ~0.7 µs).
    """

    stream: str
    entry_id: str
    event: Event


@dataclass(slots=True)
class BusStats:
    """Counters the runtime exports as Prometheus metrics."""

    consumed: dict[str, int] = field(default_factory=dict)
    produced: dict[str, int] = field(default_factory=dict)
    dead_lettered: dict[str, int] = field(default_factory=dict)
    resets: int = 0  # consumer groups found lost and recreated

    def add(self, counter: dict[str, int], stream: str, n: int = 1) -> None:
        counter[stream] = counter.get(stream, 0) + n


def default_consumer_name(service: str) -> str:
    """A consumer name stable across restarts of the same process slot (pod name or host)."""
    return os.environ.get("CDB_CONSUMER_NAME") or f"{service}-{socket.gethostname()}"


def _lost_group(exc: redis.ResponseError) -> bool:
    """Redis's answers when a group or its stream is gone (NOGROUP; UNBLOCKED on deletion)."""
    text = str(exc)
    return "NOGROUP" in text or "no longer exists" in text


class Bus:
    """Publish events to streams and consume them through this service's consumer group."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        service: str,
        consumer: str | None = None,
        maxlen_market_data: int = 100_000,
        maxlen_default: int = 1_000_000,
        claim_idle_ms: int = 30_000,
        max_lead_s: float = MAX_FUTURE_S,
        coalesce_ms: int = 0,
    ) -> None:
        self.client = client
        #: how long a consumer of ``market_data`` *and* other streams lets new market data
        #: collect before a read wakes up for it (``MARKET_DATA_COALESCE_MS``); see ``read``
        self.coalesce_ms = coalesce_ms
        #: with coalescing, an urgent entry takes the market_data backlog with it (True: the
        #: risk manager decides on every tick before a signal, execution fills at the tick
        #: that triggered the order) or goes alone, the ticks at most ``coalesce_ms`` later
        self.market_data_first = True
        #: a consumer that only records (the persistence writer) waits this long after the
        #: first entry wakes it, for more, before handling them in one batch (ms; 0 = not)
        self.linger_ms = 0
        #: how far an event time read here may lead this host's clock (``EVENT_MAX_LEAD_S``)
        self.max_lead_s = max_lead_s
        self.group = service
        self.consumer = consumer or default_consumer_name(service)
        self.maxlen_market_data = maxlen_market_data
        self.maxlen_default = maxlen_default
        self.claim_idle_ms = claim_idle_ms
        self.stats = BusStats()
        self._streams: list[str] = []
        self._replay_pending = True
        self._last_claim = 0.0
        #: handled entries whose XACK rides on the next read's round trip (``ack_later``)
        self._unacked: dict[str, list[str]] = {}
        #: when market data is next read even if nothing else arrives (monotonic seconds)
        self._lazy_due = 0.0

    # -- publishing -------------------------------------------------------------------------

    def _maxlen(self, stream: str) -> int:
        return self.maxlen_market_data if stream == MARKET_DATA else self.maxlen_default

    def publish(self, event: Event, stream: str | None = None) -> str:
        """Append one event to its stream (chosen by type unless given); returns the entry id."""
        stream = stream or STREAM_OF_TYPE[event.type]
        entry_id = self.client.xadd(
            stream, {"data": dump_event(event)}, maxlen=self._maxlen(stream), approximate=True
        )
        self.stats.add(self.stats.produced, stream)
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

    def publish_many(self, events: Iterable[Event]) -> list[str]:
        """Append many events in one round trip (a pipeline), in order."""
        pipe = self.client.pipeline(transaction=False)
        streams = []
        for event in events:
            stream = STREAM_OF_TYPE[event.type]
            streams.append(stream)
            pipe.xadd(
                stream, {"data": dump_event(event)}, maxlen=self._maxlen(stream), approximate=True
            )
        ids = pipe.execute() if streams else []
        for stream in streams:
            self.stats.add(self.stats.produced, stream)
        return [i.decode() if isinstance(i, bytes) else i for i in ids]

    # -- consuming --------------------------------------------------------------------------

    def subscribe(self, streams: Sequence[str], start_id: str = "0") -> None:
        """Create this service's consumer group on each stream (idempotent).

        A new group starts at ``start_id``: ``0`` reads the whole retained backlog, which is
        what a first deployment wants (nothing published before the service existed is lost).
        """
        self._streams = list(streams)
        self._create_groups(start_id)
        self._replay_pending = True

    def _create_groups(self, start_id: str) -> None:
        for stream in self._streams:
            try:
                self.client.xgroup_create(stream, self.group, id=start_id, mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _recover_lost_groups(self, exc: redis.ResponseError) -> None:
        """Redis lost the streams or groups: recreate them, say so loudly, and go on.

        The new groups start at ``0``: whatever was published since Redis came back is
        read. What was lost with Redis cannot be read again; PostgreSQL still has every
        decision and order, and each service rebuilds its state from there.
        """
        log.critical("consumer group %s lost (%s): recreating it", self.group, exc)
        self._create_groups("0")
        self._replay_pending = True
        self.stats.resets += 1
        message = (
            f"Redis lost the streams or consumer groups of {self.group} ({exc}); groups "
            "recreated, reading on. Entries not yet read before the loss are gone from the "
            "bus: check that Redis keeps its data (persistence) and compare the book."
        )
        try:
            self.publish(
                Alert(
                    level="CRITICAL",
                    code="BUS_RESET",
                    message=message[:500],
                    context={"group": self.group, "consumer": self.consumer[:200]},
                    source=self.group[:64],
                )
            )
        except redis.RedisError:
            log.exception("could not publish the BUS_RESET alert")

    def replay_pending(self) -> None:
        """Re-read this consumer's unacknowledged entries next (after a restart or a failure)."""
        self._replay_pending = True

    def read(self, count: int = 500, block_ms: int = 1000) -> list[Delivery]:
        """Read up to ``count`` entries: own pending first, then claimed, then new ones.

        Invalid entries are dead-lettered and acknowledged here; only valid ones are returned.
        Acknowledgements queued with ``ack_later`` go to Redis in the same round trip, ahead
        of the read.

        **Market data is coalesced** when ``coalesce_ms`` > 0 and the consumer reads
        ``market_data`` along with other streams (the risk manager, execution): new
        ``market_data`` entries then wake the consumer at most once per ``coalesce_ms``,
        while an entry on any other stream (a signal, an order, a control) wakes it at
        once. With ``market_data_first`` (the default) such a read also takes the
        ``market_data`` backlog, in a second round trip, and returns everything in the
        consumer's stream order (the risk manager's: control, order_result, market_data,
        signals), so a signal is never decided on
        prices older than the ticks before it; without, the urgent entries come alone and
        the ticks at the next read, at most ``coalesce_ms`` later. A consumer of
        ``market_data`` alone (the signal engine) is woken by every entry, as before.
        Why: at 1,000 ticks/s each such consumer otherwise makes two round trips per
        tick, and the CPU they take delays the orders (docs/benchmarks.md, issue 20).
        """
        if not self._streams:
            raise RuntimeError("subscribe() before read()")
        try:
            return self._read(count, block_ms)
        except redis.ResponseError as exc:
            if not _lost_group(exc):
                raise
            self._recover_lost_groups(exc)
            return []

    def _xreadgroup(
        self, streams: Sequence[str], ids: str, count: int, block: int | None = None
    ) -> list:
        """One XREADGROUP, preceded in the same round trip by the queued acknowledgements."""
        if not self._unacked:
            return self.client.xreadgroup(
                self.group, self.consumer, {s: ids for s in streams}, count=count, block=block
            )
        pipe = self._pipe_with_acks()
        pipe.xreadgroup(
            self.group, self.consumer, {s: ids for s in streams}, count=count, block=block
        )
        return pipe.execute()[-1]

    def _pipe_with_acks(self):
        """A pipeline holding the queued acknowledgements, which count as sent from here:
        a failure leaves their entries pending, to be redelivered."""
        pipe = self.client.pipeline(transaction=False)
        for stream, entry_ids in self._unacked.items():
            pipe.xack(stream, self.group, *entry_ids)
        self._unacked = {}
        return pipe

    def _read(self, count: int, block_ms: int) -> list[Delivery]:
        if self._replay_pending:
            raw = self._xreadgroup(self._streams, "0", count)
            deliveries = self._decode(raw)
            if deliveries or any(entries for _, entries in raw or []):
                return deliveries
            self._replay_pending = False
        if time.monotonic() - self._last_claim > self.claim_idle_ms / 1000:
            self.flush_acks()
            self._last_claim = time.monotonic()
            claimed = self._claim(count)
            if claimed:
                return claimed
        if self.linger_ms > 0:
            return self._read_lingering(count, block_ms)
        lazy = [s for s in self._streams if s == MARKET_DATA]
        urgent = [s for s in self._streams if s != MARKET_DATA]
        if self.coalesce_ms > 0 and lazy and urgent:
            wait_ms = int((self._lazy_due - time.monotonic()) * 1000)
            if wait_ms >= 1:  # market data is not due yet: wake for the other streams only
                waited = min(block_ms, wait_ms)
                raw = self._xreadgroup(urgent, ">", count, block=waited)
                if any(entries for _, entries in raw or []):
                    if not self.market_data_first:
                        return self._decode(raw)
                    # the ticks before the signal first: the market_data backlog, now
                    raw = list(self._xreadgroup(lazy, ">", count) or []) + list(raw)
                    self._lazy_due = time.monotonic() + self.coalesce_ms / 1000
                    return self._decode(self._in_stream_order(raw))
                block_ms = max(1, block_ms - waited)  # one read blocks block_ms in all
        raw = self._xreadgroup(self._streams, ">", count, block=block_ms)
        self._lazy_due = time.monotonic() + self.coalesce_ms / 1000
        return self._decode(raw)

    def _read_lingering(self, count: int, block_ms: int) -> list[Delivery]:
        """Woken by the first entry, wait ``linger_ms`` for more, then return them all.

        A batch that came full (``count`` entries on a stream) is returned at once: there is
        more to read, nothing to wait for.
        """
        raw = list(self._xreadgroup(self._streams, ">", count, block=block_ms) or [])
        if not any(entries for _, entries in raw):
            return []
        if all(len(entries) < count for _, entries in raw):
            time.sleep(self.linger_ms / 1000)
            raw += list(self._xreadgroup(self._streams, ">", count) or [])
        return self._decode(self._in_stream_order(raw))

    def _in_stream_order(self, raw: list) -> list:
        """XREADGROUP replies of several reads, in this consumer's stream order."""
        rank = {s: i for i, s in enumerate(self._streams)}

        def key(item) -> int:
            name = item[0].decode() if isinstance(item[0], bytes) else item[0]
            return rank.get(name, len(rank))

        return sorted(raw or [], key=key)

    def _claim(self, count: int) -> list[Delivery]:
        """Take over entries another (dead) consumer of this group left pending too long."""
        out: list[Delivery] = []
        for stream in self._streams:
            result = self.client.xautoclaim(
                stream, self.group, self.consumer, self.claim_idle_ms, "0-0", count=count
            )
            entries = result[1] if result else []
            if entries:
                log.info("claimed %d idle entries on %s", len(entries), stream)
                out.extend(self._decode([(stream, entries)]))
        return out

    def _decode(self, raw: list | None) -> list[Delivery]:
        out: list[Delivery] = []
        bad: list[tuple[str, str, bytes | None, str]] = []
        for stream_name, entries in raw or []:
            stream = stream_name.decode() if isinstance(stream_name, bytes) else stream_name
            valid = len(out)
            allowed = TYPES_OF_STREAM.get(stream)
            for entry_id, fields in entries:
                eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                if fields is None:  # deleted while pending: nothing to handle, just ack
                    self.client.xack(stream, self.group, eid)
                    continue
                data = fields.get(b"data")
                if data is None:
                    data = fields.get("data")
                try:  # the common case inline; _validate explains a failure
                    event = parse_event(data, self.max_lead_s) if data is not None else None
                except ValueError:  # pydantic's ValidationError included
                    event = None
                if event is None or (allowed is not None and event.type not in allowed):
                    bad.append(
                        (stream, eid, data, self._validate(stream, data, self.max_lead_s)[1])
                    )
                else:
                    out.append(Delivery(stream, eid, event))
            if len(out) > valid:  # counted once per stream and batch, not per entry
                self.stats.add(self.stats.consumed, stream, len(out) - valid)
        if bad:
            self._dead_letter(bad)
        return out

    @staticmethod
    def _validate(
        stream: str, data: bytes | str | None, max_lead_s: float = MAX_FUTURE_S
    ) -> tuple[Event | None, str]:
        if data is None:
            return None, "entry has no 'data' field"
        try:
            event = parse_event(data, max_lead_s)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "event"
            return None, f"invalid event: {where}: {first['msg']}"[:500]
        except ValueError as exc:  # not JSON at all
            return None, f"invalid JSON: {exc}"[:500]
        if event.type not in TYPES_OF_STREAM.get(stream, frozenset({event.type})):
            return None, f"event type {event.type!r} does not belong on stream {stream!r}"
        return event, ""

    def _dead_letter(self, bad: list[tuple[str, str, bytes | None, str]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for stream, eid, data, reason in bad:
            payload = data if data is not None else b""
            pipe.xadd(
                DEAD_LETTER,
                {
                    "data": payload,
                    "stream": stream,
                    "entry_id": eid,
                    "consumer": f"{self.group}/{self.consumer}",
                    "reason": reason,
                    "timestamp": str(int(time.time())),
                },
                maxlen=self.maxlen_default,
                approximate=True,
            )
            pipe.xack(stream, self.group, eid)
            log.warning("dead-lettered %s %s: %s", stream, eid, reason)
        pipe.execute()
        for stream, *_ in bad:
            self.stats.add(self.stats.dead_lettered, stream)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move a valid entry that its handler cannot process to ``dead_letter`` and ack it."""
        self._dead_letter(
            [(delivery.stream, delivery.entry_id, dump_event(delivery.event), reason)]
        )

    def ack_later(self, deliveries: Iterable[Delivery]) -> None:
        """Queue handled entries' acknowledgements for the next read's round trip.

        The runtime's way: the XACK costs no round trip of its own, and Redis runs it
        before the next XREADGROUP (blocking or not), so an entry stays pending only
        while its consumer is between a handled batch and its next read. Entries whose
        acknowledgement is lost with a crash are redelivered (at-least-once; handlers are
        idempotent). ``flush_acks`` sends them at once (a graceful stop).
        """
        for d in deliveries:
            self._unacked.setdefault(d.stream, []).append(d.entry_id)

    def flush_acks(self) -> None:
        """Send the acknowledgements queued by ``ack_later`` now (one round trip)."""
        if self._unacked:
            self._pipe_with_acks().execute()

    def ack(self, deliveries: Iterable[Delivery]) -> None:
        """Acknowledge handled entries (and any queued ones), per stream, in one round trip."""
        self.ack_later(deliveries)
        self.flush_acks()
