"""The bus's latency rules on a real Redis: acknowledgements that ride on the next read,
and market data coalesced for consumers that also read urgent streams.

1. ``Bus.ack_later`` queues acknowledgements; the next read sends them in its own round
   trip, ahead of its XREADGROUP (so a replay or a claim never redelivers them);
   ``flush_acks`` sends them at once (the runtime's graceful stop).
2. ``Bus(coalesce_ms=N)``: a consumer of ``market_data`` *and* other streams is woken by
   new market data at most once per N ms, by an entry on any other stream at once. With
   ``market_data_first`` such a read also takes the market data published before it and
   returns everything in the consumer's stream order; without, the urgent entries come
   alone and the ticks at the next read.

Timing assertions are about wake-ups only and use wide margins (windows of 0.4 s and
more, bounds a loaded two-core machine still meets); none is about speed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from cdb.bus import CONTROL, MARKET_DATA, SIGNALS, Bus, Delivery
from cdb.events import Control, MarketData, Signal
from cdb.risk.service import RiskService
from cdb.runtime import Runtime
from cdb.service import Service
from cdb.settings import BaseServiceSettings, load_settings


def md(i: int) -> MarketData:
    return MarketData(symbol="BTC_USDT", price=100.0 + i, volume=1e6, pct_change=0.0)


def sig(i: int) -> Signal:
    return Signal(
        signal_id=f"s{i}",
        symbol="BTC_USDT",
        side="BUY",
        confidence=0.5,
        price=100.0,
        pct_change=4.0,
        reason="test",
    )


def pending(client: redis.Redis, stream: str, group: str) -> int:
    return client.xpending(stream, group)["pending"]


@pytest.fixture
def producer(redis_env) -> Iterator[Bus]:
    """A publishing bus on a client of its own (usable from a timer thread while the
    consumer's connection is blocked in XREADGROUP)."""
    client = redis.Redis(port=int(redis_env["REDIS_PORT"]))
    yield Bus(client, service="producer")
    client.close()


def runtime_settings(redis_env) -> BaseServiceSettings:
    """Settings for a probe service run by a real Runtime (any free HTTP port)."""
    return load_settings(BaseServiceSettings, REDIS_PORT=int(redis_env["REDIS_PORT"]), HTTP_PORT=0)


def later(delay_s: float, fn, *args) -> threading.Timer:
    timer = threading.Timer(delay_s, fn, args)
    timer.start()
    return timer


def timed_read(bus: Bus, block_ms: int) -> tuple[list[Delivery], float]:
    started = time.monotonic()
    got = bus.read(block_ms=block_ms)
    return got, time.monotonic() - started


# -- 1. acknowledgements ride on the next read --------------------------------------------------


def test_queued_acks_stay_pending_until_the_next_read_sends_them(redis_client):
    """ack_later sends nothing by itself; the next read (here one that finds nothing and
    returns after its short block) acknowledges them in its round trip."""
    bus = Bus(redis_client, service="g", consumer="c1")
    bus.subscribe([SIGNALS])
    bus.publish_many([sig(i) for i in range(3)])
    got = bus.read(block_ms=50)
    assert len(got) == 3
    bus.ack_later(got)
    assert pending(redis_client, SIGNALS, "g") == 3, "queued, not yet sent"
    assert bus.read(block_ms=50) == []
    assert pending(redis_client, SIGNALS, "g") == 0, "sent with the (empty) read"


def test_flush_acks_sends_the_queued_acks_at_once(redis_client):
    """flush_acks acknowledges what ack_later queued without a read; a second flush (nothing
    queued) is a no-op."""
    bus = Bus(redis_client, service="g", consumer="c1")
    bus.subscribe([SIGNALS, MARKET_DATA])
    bus.publish_many([sig(1), md(1), md(2)])
    got = bus.read(block_ms=50)
    assert len(got) == 3
    bus.ack_later(got)
    assert pending(redis_client, SIGNALS, "g") + pending(redis_client, MARKET_DATA, "g") == 3
    bus.flush_acks()
    assert pending(redis_client, SIGNALS, "g") == 0
    assert pending(redis_client, MARKET_DATA, "g") == 0
    bus.flush_acks()


def test_replay_does_not_redeliver_entries_whose_ack_was_queued(redis_client):
    """After replay_pending() (what the runtime does after a transient failure) the read of
    the pending entries (id 0) carries the queued acks ahead of it: only the entry that was
    not handled comes back."""
    bus = Bus(redis_client, service="g", consumer="c1")
    bus.subscribe([SIGNALS])
    ids = bus.publish_many([sig(i) for i in range(3)])
    got = bus.read(block_ms=50)
    assert [d.entry_id for d in got] == ids
    bus.ack_later(got[:2])  # the third was not handled (its handler failed)
    bus.replay_pending()
    again = bus.read(block_ms=50)
    assert [d.entry_id for d in again] == ids[2:], "handled entries are not redelivered"
    assert pending(redis_client, SIGNALS, "g") == 1


def test_a_due_claim_does_not_take_back_entries_whose_ack_was_queued(redis_client):
    """XAUTOCLAIM also takes the caller's own idle entries: a read whose claim is due sends
    the queued acks first, so handled entries idle longer than claim_idle_ms are not
    delivered a second time."""
    bus = Bus(redis_client, service="g", consumer="c1", claim_idle_ms=200)
    bus.subscribe([SIGNALS])
    bus.publish_many([sig(1), sig(2)])
    got = bus.read(block_ms=50)
    assert len(got) == 2
    bus.ack_later(got)
    time.sleep(0.5)  # idle past claim_idle_ms, and the claim is due again
    assert bus.read(block_ms=50) == []
    assert pending(redis_client, SIGNALS, "g") == 0


class _AckProbe(Service):
    """Handles signals; records how many entries were pending while it handled each one, and
    asks the runtime to stop after the second."""

    name = "ackprobe"
    streams = (SIGNALS,)

    def __init__(self, settings, bus) -> None:
        super().__init__(settings, bus)
        self.runtime: Runtime | None = None
        self.pending_seen: list[int] = []
        self.handled = threading.Event()

    def handle(self, delivery: Delivery) -> None:
        self.pending_seen.append(pending(self.bus.client, SIGNALS, self.name))
        self.handled.set()
        if len(self.pending_seen) == 2:
            assert self.runtime is not None
            self.runtime.request_stop()


def test_runtime_acks_with_the_next_read_and_flushes_at_a_graceful_stop(
    redis_env, redis_client, producer, clean_env
):
    """Runtime._once queues the acks of a handled batch (ack_later): while the second entry
    is handled the first is acknowledged already (its ack rode on the read that returned
    the second). The second is handled last and the loop stops right after it, with no
    further read: Runtime._shutdown's flush_acks is what acknowledges it."""
    settings = runtime_settings(redis_env)
    service = _AckProbe(settings, Bus(redis_client, service="ackprobe", consumer="c1"))
    runtime = Runtime(service)
    service.runtime = runtime
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    try:
        producer.publish(sig(1))
        assert service.handled.wait(20), "first entry handled"
        producer.publish(sig(2))
        thread.join(timeout=20)
        assert not thread.is_alive(), "stopped after the second entry"
    finally:
        runtime.request_stop()
        thread.join(timeout=20)
    assert service.pending_seen == [1, 1], "the first entry was acked before the second came"
    assert pending(redis_client, SIGNALS, "ackprobe") == 0, "flushed at the graceful stop"


class _StandbyProbe(Service):
    """Handles one signal, then stops reading (``streams = ()``), as execution does when it
    goes to standby, and keeps ticking."""

    name = "standbyprobe"
    streams = (SIGNALS,)

    def handle(self, delivery: Delivery) -> None:
        self.streams = ()  # type: ignore[misc]

    def tick(self) -> float | None:
        return 0.05


def test_a_service_that_stops_reading_still_acks_its_last_batch(
    redis_env, redis_client, producer, clean_env
):
    """A copy that stops reading (execution's standby) has no next read for its queued
    acks to ride on: the runtime flushes them on its next loop, so the entry it handled is
    not left pending for another copy to claim and handle again."""
    settings = runtime_settings(redis_env)
    service = _StandbyProbe(settings, Bus(redis_client, service="standbyprobe", consumer="c1"))
    runtime = Runtime(service)
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    try:
        producer.publish(sig(1))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and service.streams:
            time.sleep(0.01)
        assert not service.streams, "the entry was handled"
        while time.monotonic() < deadline and pending(redis_client, SIGNALS, "standbyprobe"):
            time.sleep(0.01)
        assert pending(redis_client, SIGNALS, "standbyprobe") == 0, "acked while still running"
        assert thread.is_alive(), "acked by the running loop, not by the stop"
    finally:
        runtime.request_stop()
        thread.join(timeout=20)


# -- 2. market data coalescing -------------------------------------------------------------------


def coalescing_bus(client: redis.Redis, coalesce_ms: int, streams, first: bool = True) -> Bus:
    """A consumer like the risk manager, primed: the first read (replay, claim, then one
    for new entries) is done, so the coalescing window starts now."""
    bus = Bus(client, service="risk-t", consumer="c1", coalesce_ms=coalesce_ms)
    bus.market_data_first = first
    bus.subscribe(streams)
    assert bus.read(block_ms=20) == []
    return bus


def test_new_market_data_alone_wakes_the_read_only_after_the_window(redis_client, producer):
    """A tick published while the read blocks does not wake it before coalesce_ms (400 ms)
    since the last read; it is returned once the window ends, long before the block time."""
    bus = coalescing_bus(redis_client, 400, (CONTROL, MARKET_DATA))
    primed = time.monotonic()
    timer = later(0.05, producer.publish, md(1))
    got, _ = timed_read(bus, block_ms=5000)
    since_last_read = time.monotonic() - primed
    timer.join()
    assert [(d.stream, d.event.price) for d in got] == [(MARKET_DATA, 101.0)]
    assert since_last_read >= 0.25, "woken by a tick inside the coalescing window"
    assert since_last_read < 4.0, "the tick waited for the block time, not the window"


def test_a_signal_wakes_the_read_at_once_with_the_ticks_before_it_first(redis_client, producer):
    """market_data_first (the risk manager): a signal published while the read blocks
    wakes it at once, well inside the 3 s window, and the read also returns the tick
    published before the signal, ahead of it: the risk manager's stream order (control,
    order_result, market_data, signals) puts market data before signals."""
    assert RiskService.streams.index(MARKET_DATA) < RiskService.streams.index(SIGNALS)
    bus = coalescing_bus(redis_client, 3000, RiskService.streams)
    producer.publish(md(1))
    timer = later(0.1, producer.publish, sig(1))
    got, elapsed = timed_read(bus, block_ms=5000)
    timer.join()
    assert elapsed < 2.0, "the signal did not wake the read (it waited for the window)"
    assert [(d.stream, d.event.type) for d in got] == [
        (MARKET_DATA, "market_data"),
        (SIGNALS, "signal"),
    ]


def test_entries_of_a_woken_read_come_in_the_consumers_stream_order(redis_client, producer):
    """The stream order of subscribe governs, not publication order: a control published
    after the tick still comes first for the risk manager (control before market_data
    before signals)."""
    bus = coalescing_bus(redis_client, 3000, RiskService.streams)
    producer.publish(md(1))
    producer.publish(sig(1))
    producer.publish(Control(action="kill_switch", reason="test", source="operator"))
    got, elapsed = timed_read(bus, block_ms=5000)
    assert elapsed < 2.0
    assert [d.stream for d in got] == [CONTROL, MARKET_DATA, SIGNALS]


def test_without_market_data_first_the_signal_comes_alone_and_the_ticks_next(
    redis_client, producer
):
    """market_data_first=False (execution): the urgent entry wakes the read at once and
    comes alone; the tick published before it comes with the next read, once the window
    (2 s, counted from the read before) is over: prices at most coalesce_ms old."""
    bus = coalescing_bus(redis_client, 2000, (SIGNALS, MARKET_DATA), first=False)
    primed = time.monotonic()
    producer.publish(md(1))
    timer = later(0.05, producer.publish, sig(1))
    got, elapsed = timed_read(bus, block_ms=5000)
    timer.join()
    assert elapsed < 1.5, "the signal did not wake the read"
    assert [d.stream for d in got] == [SIGNALS]
    nxt = bus.read(block_ms=5000)
    assert [d.stream for d in nxt] == [MARKET_DATA]
    assert time.monotonic() - primed >= 1.5, "the tick came before the window was over"
    assert pending(redis_client, MARKET_DATA, "risk-t") == 1, "read, not lost"


def test_coalesce_zero_keeps_waking_for_every_tick(redis_client, producer):
    """coalesce_ms=0 (the old behaviour): a tick wakes a consumer of several streams at
    once. The assertion bounds the wait well below the 5 s block (what a consumer that
    ignored ticks would show), not any speed."""
    bus = coalescing_bus(redis_client, 0, (CONTROL, MARKET_DATA))
    timer = later(0.05, producer.publish, md(1))
    got, elapsed = timed_read(bus, block_ms=5000)
    timer.join()
    assert [d.stream for d in got] == [MARKET_DATA]
    assert elapsed < 2.5


def test_a_consumer_of_market_data_alone_is_never_delayed(redis_client, producer):
    """Coalescing applies only with other streams to wake for: a consumer of market_data
    only (the signal engine) is woken by every tick even with a 3 s window."""
    bus = coalescing_bus(redis_client, 3000, (MARKET_DATA,))
    timer = later(0.05, producer.publish, md(1))
    got, elapsed = timed_read(bus, block_ms=5000)
    timer.join()
    assert [d.stream for d in got] == [MARKET_DATA]
    assert elapsed < 2.0, "the tick waited for the coalescing window"
    timer = later(0.05, producer.publish, md(2))
    got, elapsed = timed_read(bus, block_ms=5000)
    timer.join()
    assert [d.event.price for d in got] == [102.0]
    assert elapsed < 2.0


def test_queued_acks_ride_on_the_coalesced_reads_too(redis_client, producer):
    """The urgent-only read of a coalescing consumer carries the queued acks as well."""
    bus = coalescing_bus(redis_client, 3000, RiskService.streams)
    producer.publish(sig(1))
    got = bus.read(block_ms=5000)
    assert [d.stream for d in got] == [SIGNALS]
    bus.ack_later(got)
    assert pending(redis_client, SIGNALS, "risk-t") == 1
    assert bus.read(block_ms=50) == []  # inside the window: the urgent-only read
    assert pending(redis_client, SIGNALS, "risk-t") == 0


def test_an_idle_coalescing_read_blocks_block_ms_in_all(redis_client, producer):
    """Nothing arrives: the urgent-only wait and the read of every stream after it share
    one ``block_ms`` (the runtime ticks, and execution renews its lease, at least that
    often), instead of blocking ``block_ms`` twice."""
    bus = coalescing_bus(redis_client, 1500, (SIGNALS, MARKET_DATA))
    got, took = timed_read(bus, block_ms=1000)
    assert got == []
    assert 0.9 <= took < 1.6, f"blocked {took:.2f} s for block_ms=1000"


# -- 3. the persistence writer's linger ----------------------------------------------------------


def test_a_lingering_read_collects_what_comes_within_the_linger(redis_client, producer):
    """linger_ms (the persistence writer's PERSISTENCE_LINGER_MS): the first entry wakes the
    read, which waits that long and returns it together with what came meanwhile, in one
    batch; a read that came back full (``count`` entries) does not wait."""
    bus = Bus(redis_client, service="writer-t", consumer="c1")
    bus.linger_ms = 400
    bus.subscribe((SIGNALS,))
    assert bus.read(block_ms=20) == []
    producer.publish(sig(1))
    timer = later(0.1, producer.publish, sig(2))
    got, took = timed_read(bus, block_ms=5000)
    timer.join()
    assert [d.event.signal_id for d in got] == ["s1", "s2"]
    assert took >= 0.35, f"returned after {took:.2f} s, before the linger ended"
    producer.publish(sig(3))
    producer.publish(sig(4))
    started = time.monotonic()
    full = bus.read(count=1, block_ms=5000)
    assert [d.event.signal_id for d in full] == ["s3"]
    assert time.monotonic() - started < 0.35, "a full batch does not linger"


class _CrashAfterOne(Service):
    """Handles one signal, then its tick raises a bug (not a transient error)."""

    name = "crashprobe"
    streams = (SIGNALS,)

    def __init__(self, settings, bus) -> None:
        super().__init__(settings, bus)
        self.handled = 0

    def handle(self, delivery: Delivery) -> None:
        self.handled += 1

    def tick(self) -> float | None:
        if self.handled:
            raise RuntimeError("a bug")
        return None


def test_a_bug_escaping_the_loop_still_acks_what_was_handled(
    redis_env, redis_client, producer, clean_env
):
    """The queued acks of a handled batch are sent before a non-transient error ends the
    process: the entry is not handled a second time after the restart."""
    producer.publish(sig(1))
    settings = runtime_settings(redis_env)
    service = _CrashAfterOne(settings, Bus(redis_client, service="crashprobe", consumer="c1"))
    runtime = Runtime(service)
    with pytest.raises(RuntimeError, match="a bug"):
        runtime.run()
    assert service.handled == 1
    assert pending(redis_client, SIGNALS, "crashprobe") == 0
