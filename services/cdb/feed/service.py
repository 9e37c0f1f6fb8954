"""``cdb run feed``: publishes ``market_data`` (and ``market_status``/``alert``) from one source.

The service only produces: each ``tick`` polls the source and publishes what it
returned in pipelined batches. Events polled but not yet published survive a Redis
outage in memory and go out first once Redis is back, so a replay loses nothing.
A replay at its end stops the process (exit 0) unless ``FEED_REPLAY_AT_END=idle``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, ClassVar

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from cdb.bus import HELD_KEY, MARKET_DATA, Bus
from cdb.events import Event
from cdb.feed.candles import window_candles
from cdb.feed.replay import ReplayFileError, read_files, sample_path
from cdb.feed.settings import FeedSettings
from cdb.feed.sources import ReplaySource, Source, SyntheticSource
from cdb.service import Service
from cdb.settings import SettingsError

log = logging.getLogger(__name__)


def last_prices(client: Any, symbols: list[str], scan: int = 5_000) -> dict[str, float]:
    """The newest ``market_data`` price per symbol on the bus (symbol → price).

    Reads the stream backwards, at most ``scan`` entries; symbols not found are left out.
    A restarted synthetic market continues from these, so positions kept from the previous
    run are not valued (and stopped out) at the seed's starting price.
    """
    wanted, found = set(symbols), {}
    end, seen = "+", 0
    while wanted - found.keys() and seen < scan:
        entries = client.xrevrange(MARKET_DATA, max=end, min="-", count=500)
        if not entries:
            break
        for _id, fields in entries:
            try:
                data = json.loads(fields.get(b"data") or fields.get("data") or b"null")
                symbol, price = data["symbol"], float(data["price"])
            except (TypeError, ValueError, KeyError):
                continue
            if symbol in wanted and symbol not in found and price > 0:
                found[symbol] = price
        seen += len(entries)
        last = entries[-1][0]
        last = last.decode() if isinstance(last, bytes) else last
        end = f"({last}"
    return found


def build_source(settings: FeedSettings, start_prices: dict[str, float] | None = None) -> Source:
    """The source the settings ask for; a setting that cannot work is a ``SettingsError``.

    ``start_prices`` (symbol → price): where the synthetic market continues.
    """
    try:
        window_candles(settings.FEED_INTERVAL, settings.SIGNAL_LOOKBACK_MIN)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    common = {"lookback_min": settings.SIGNAL_LOOKBACK_MIN, "interval": settings.FEED_INTERVAL}
    if settings.FEED_SOURCE == "synthetic":
        if 0 <= settings.FEED_SYNTHETIC_PERIOD_S < 1 and settings.EVENT_MAX_LEAD_S <= 60:
            log.warning(
                "FEED_SYNTHETIC_PERIOD_S %g: more than one candle a second, so the strictly "
                "increasing event times run ahead of the clock and readers dead-letter them "
                "once they lead by EVENT_MAX_LEAD_S (%d s); raise it on every service "
                "(cdb up does)",
                settings.FEED_SYNTHETIC_PERIOD_S,
                settings.EVENT_MAX_LEAD_S,
            )
        return SyntheticSource(
            settings.symbol_list(),
            settings.FEED_SEED,
            period_s=settings.FEED_SYNTHETIC_PERIOD_S,
            quote_volume=settings.FEED_SYNTHETIC_QUOTE_VOLUME,
            batch=settings.FEED_BATCH,
            start_prices=start_prices,
            **common,
        )
    if settings.FEED_SOURCE == "replay":
        paths = [Path(p) for p in settings.replay_files()] or [sample_path()]
        try:
            rows = read_files(paths)
        except ReplayFileError as exc:
            raise SettingsError(f"FEED_REPLAY_FILES: {exc}") from None
        source = ReplaySource(
            rows,
            speed=settings.FEED_REPLAY_SPEED,
            batch=settings.FEED_BATCH,
            shift_to_now=settings.FEED_REPLAY_SHIFT_TO_NOW,
            **common,
        )
        lead = source.max_lead_s()
        if lead > settings.EVENT_MAX_LEAD_S:
            log.warning(
                "this replay's event times run up to %d s ahead of the clock (FEED_REPLAY_SPEED "
                "%g, shifted to now): readers whose EVENT_MAX_LEAD_S is below that (yours: %d) "
                "dead-letter its later events; set EVENT_MAX_LEAD_S=%d on every service",
                lead,
                settings.FEED_REPLAY_SPEED,
                settings.EVENT_MAX_LEAD_S,
                lead + 60,
            )
        return source
    from cdb.exchange.market import MarketClient  # ccxt loads only for the live source
    from cdb.feed.live import LiveSource

    try:
        client = MarketClient(
            settings.EXCHANGE_ID,
            timeout_ms=int(settings.FEED_HTTP_TIMEOUT_S * 1000),
            attempts=settings.FEED_RETRY_ATTEMPTS,
            base_url=settings.EXCHANGE_BASE_URL or None,
        )
    except ValueError as exc:
        raise SettingsError(f"EXCHANGE_ID {exc}") from None
    live = dict(
        symbols=settings.symbol_list(),
        top_movers=settings.TOP_MOVERS,
        quote=settings.QUOTE_ASSET,
        poll_s=settings.FEED_POLL_S,
        close_delay_s=settings.FEED_CLOSE_DELAY_S,
        unreachable_after_s=settings.FEED_UNREACHABLE_AFTER_S,
        movers_refresh_s=settings.FEED_MOVERS_REFRESH_S,
        movers_min_quote_volume=settings.FEED_MOVERS_MIN_QUOTE_VOLUME,
        **common,
    )
    if settings.FEED_SOURCE == "live":
        return LiveSource(client, **live)
    return stream_source(settings, client, live)


def stream_source(settings: FeedSettings, client: Any, live: dict[str, Any]) -> Source:
    """The stream source over ``client`` (REST) and a websocket worker; ``live``: its
    :class:`~cdb.feed.live.LiveSource` arguments."""
    import ccxt.pro

    from cdb.feed.stream import StreamSource
    from cdb.feed.stream_ws import StreamWorker

    if not hasattr(ccxt.pro, settings.EXCHANGE_ID):
        raise SettingsError(
            f"EXCHANGE_ID {settings.EXCHANGE_ID!r} has no websocket API in ccxt.pro: "
            "set FEED_SOURCE=live"
        )
    if settings.EXCHANGE_BASE_URL and not settings.FEED_STREAM_URL:
        raise SettingsError(
            "FEED_STREAM_URL must name the websocket of the exchange EXCHANGE_BASE_URL points "
            "at (ws://host:port/ws), or set FEED_SOURCE=live"
        )
    worker = StreamWorker(
        settings.EXCHANGE_ID,
        timeframe=settings.FEED_INTERVAL,
        ws_url=settings.FEED_STREAM_URL or None,
        per_connection=settings.FEED_STREAM_PER_CONNECTION,
        renew_s=settings.FEED_STREAM_RENEW_S,
        backoff_cap_s=settings.FEED_STREAM_BACKOFF_MAX_S,
    )
    return StreamSource(
        client,
        worker,
        stream_grace_s=settings.FEED_STREAM_GRACE_S,
        held_stale_s=settings.FEED_HELD_STALE_S or None,
        **live,
    )


#: Event types the feed publishes: their counters exist from the start, at 0.
PUBLISHED_TYPES = ("market_data", "market_status")


class _FeedCollector:
    """The feed's counters; also under their pre-``cdb_`` names for one release (CHANGELOG)."""

    def __init__(self, service: FeedService) -> None:
        self.service = service

    def collect(self):
        counts = {**dict.fromkeys(PUBLISHED_TYPES, 0), **self.service.published}
        for name in ("cdb_feed_events_published", "feed_events_published"):
            published = CounterMetricFamily(
                name, "Events the feed published, per type", labels=["type"]
            )
            for kind, value in sorted(counts.items()):
                published.add_metric([kind], value)
            yield published
        for name in ("cdb_feed_unpublished_events", "feed_unpublished_events"):
            yield GaugeMetricFamily(
                name, "Events polled but not yet on the stream", value=len(self.service.pending)
            )
        source_metrics = getattr(self.service.source, "metrics", None)
        if source_metrics is not None:  # the stream source: data age, reconnects, repairs
            yield from source_metrics()


class FeedService(Service):
    """Market data from the configured source onto the ``market_data`` stream."""

    name: ClassVar[str] = "feed"
    default_port: ClassVar[int] = 8000
    settings_class: ClassVar[type[FeedSettings]] = FeedSettings
    streams: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: FeedSettings, bus: Bus, source: Source | None = None) -> None:
        super().__init__(settings, bus)
        self.source = source or build_source(settings, self._continue_from(settings))
        self.pending: list[Event] = []
        self.published: dict[str, int] = {}
        self.last_market_data: dict[str, dict[str, Any]] = {}
        self.registry.register(_FeedCollector(self))
        if getattr(self.source, "held", False) is None:  # the live source: poll held symbols
            self.source.held = self._held  # type: ignore[attr-defined]
        log.info(
            "source %s, interval %s, lookback %d min",
            self.source.name,
            settings.FEED_INTERVAL,
            settings.SIGNAL_LOOKBACK_MIN,
        )

    def _continue_from(self, settings: FeedSettings) -> dict[str, float] | None:
        """For the synthetic market: the last prices published, if the bus still has them."""
        if settings.FEED_SOURCE != "synthetic":
            return None
        try:
            prices = last_prices(self.bus.client, settings.symbol_list())
        except redis.RedisError as exc:
            log.warning("cannot read the last prices (%s); the synthetic market starts anew", exc)
            return None
        if prices:
            log.info("synthetic market continues from the last published prices: %s", prices)
        return prices

    def _held(self) -> list[str]:
        """The symbols the risk manager holds (``HELD_KEY``); absent (a flushed Redis) means
        "unknown": the source keeps its last list until the risk manager writes it again."""
        raw = self.bus.client.get(HELD_KEY)
        if raw is None:
            raise LookupError(f"{HELD_KEY} not written yet")
        return list(json.loads(raw))

    def tick(self) -> float | None:
        delay = 0.0
        if not self.pending:
            poll = self.source.poll(time.time())
            self.pending, delay = poll.events, poll.delay
        batch = self.settings.FEED_BATCH
        while self.pending:
            chunk = self.pending[:batch]
            self.bus.publish_many(chunk)  # a Redis error leaves the rest pending for the retry
            del self.pending[:batch]
            self._count(chunk)
        return delay

    def _count(self, events: list[Event]) -> None:
        for event in events:
            self.published[event.type] = self.published.get(event.type, 0) + 1
            if event.type == "market_data":
                self.last_market_data[event.symbol] = {
                    "price": event.price,
                    "pct_change": round(event.pct_change, 4),
                    "volume": round(event.volume, 2),
                    "timestamp": event.timestamp,
                }

    def finished(self) -> bool:
        done = self.source.finished and not self.pending
        return done and self.settings.FEED_REPLAY_AT_END == "stop"

    def status(self) -> dict[str, Any]:
        return {
            "source": self.source.name,
            # copies: the HTTP thread serialises while the loop adds symbols
            "published": dict(self.published),
            "unpublished": len(self.pending),
            "last_market_data": dict(self.last_market_data),
            **self.source.status(),
        }

    def threads(self):
        threads = getattr(self.source, "threads", None)  # the stream source's websocket thread
        return threads() if threads is not None else []

    def close(self) -> None:
        self.source.close()


SERVICE = FeedService
