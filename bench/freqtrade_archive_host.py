"""`freqtrade` with its Binance archive host replaced: run by bench/archive.py with
freqtrade's own interpreter (.bench/freqtrade), as

    python bench/freqtrade_archive_host.py http://127.0.0.1:PORT/binance-archive download-data ...

freqtrade 2026.9 builds its archive URLs from a fixed host (https://data.binance.vision, in
freqtrade.exchange.binance_public_data); the benchmark points them at the simulator's
archive instead, and changes nothing else.
"""

import sys

from freqtrade.exchange import binance_public_data as archive
from freqtrade.main import main

REAL_HOST = "https://data.binance.vision"
host = sys.argv.pop(1)
real_url = archive.binance_vision_ohlcv_zip_url


def simulated_url(*args: object, **kwargs: object) -> str:
    url = real_url(*args, **kwargs)  # type: ignore[arg-type]
    assert url.startswith(REAL_HOST), url
    return host + url.removeprefix(REAL_HOST)


archive.binance_vision_ohlcv_zip_url = simulated_url
main(sys.argv[1:])
