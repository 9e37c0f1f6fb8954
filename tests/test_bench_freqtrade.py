"""The freqtrade comparison runs ours and says clearly why freqtrade was skipped.

Installing freqtrade takes minutes and a network path to PyPI, so the suite does not:
``--ft-venv`` names a path where no virtualenv can be made, and the benchmark must still
measure ``cdb backtest`` and note the reason instead of failing. No timing is asserted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `bench` is a top-level directory, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import freqtrade_compare  # noqa: E402
from bench.binance_stub import exchange_info  # noqa: E402


def test_skips_freqtrade_with_the_reason_and_measures_ours(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the venv would go")
    args = argparse.Namespace(ft_days=2, ft_symbols=3, ft_venv=str(blocker / "venv"))
    result = freqtrade_compare.run(quick=False, context={"args": args})
    rows = result.tables[0].rows
    assert [r[0] for r in rows] == ["cdb backtest"]
    assert rows[0][1] > 0 and rows[0][5] > 0  # wall seconds, peak RSS
    assert any(
        n.startswith("freqtrade skipped: freqtrade could not be installed") for n in result.notes
    )
    assert {r[0] for r in result.tables[1].rows} >= {1}


def test_exchange_info_stub_is_binance_shaped():
    info = exchange_info(["BTC_USDT"])
    (market,) = info["symbols"]
    assert market["symbol"] == "BTCUSDT" and market["baseAsset"] == "BTC"
    assert {f["filterType"] for f in market["filters"]} == {"PRICE_FILTER", "LOT_SIZE", "NOTIONAL"}


def test_targets_of_issue_13() -> None:
    from bench import targets

    context = {
        "freqtrade": {
            "candles": 864_000,
            "cdb": {"cpu": 2.88, "loop_s": 0.4},
            "freqtrade": {"cpu": 22.6},
        }
    }
    rows = {r[0]: r[-1] for r in targets.summarize(context).tables[0].rows}
    assert rows["backtest whole process, candles per CPU-s"] == "met"
    assert rows["backtest decision loop, candles per CPU-s"] == "met"
    assert rows["backtest vs freqtrade, × per CPU-s"] == "missed by 22 %"
