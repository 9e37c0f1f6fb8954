"""Regenerate the replay sample shipped in ``cdb/data/sample_1m.csv``.

The sample is synthetic, not recorded: 240 one-minute candles (four hours from
2024-01-01 00:00 UTC) of BTC_USDT, ETH_USDT and SOL_USDT from the synthetic market
with seed 7, which holds quiet phases and several momentum bursts. Recreate it with
``python -m cdb.feed.sample > services/cdb/data/sample_1m.csv``; a test checks that
the shipped file is exactly this output.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

from cdb.feed.candles import Candle
from cdb.feed.replay import write_candles
from cdb.feed.synthetic import SyntheticMarket

SAMPLE_SEED = 7
SAMPLE_SYMBOLS = ("BTC_USDT", "ETH_USDT", "SOL_USDT")
SAMPLE_START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
SAMPLE_CANDLES = 240


def sample_rows(
    candles: int = SAMPLE_CANDLES, seed: int = SAMPLE_SEED
) -> Iterator[tuple[str, Candle]]:
    market = SyntheticMarket(list(SAMPLE_SYMBOLS), seed, start_ms=SAMPLE_START_MS)
    for _ in range(candles):
        yield from market.step()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=SAMPLE_CANDLES)
    parser.add_argument("--seed", type=int, default=SAMPLE_SEED)
    args = parser.parse_args(argv)
    write_candles(sample_rows(args.candles, args.seed), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
