"""The simulator's Binance public data archive: the real host's layout and quirks, the same
candles as its REST klines, and the faults a downloader must survive."""

from __future__ import annotations

import hashlib
import io
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest

from market_data.simulator.book import Clock
from market_data.simulator.faults import Faults
from market_data.simulator.server import RunningSimulator, Simulator
from market_data_tests.conftest import NOW_MS  # 2026-11-20 12:34:56 UTC, the clock frozen
from market_data_tests.helpers import admin, http_get

ARCHIVE = "/binance-archive/data"
MAY_2022, MAY_2024, MAY_2025 = 1_651_363_200_000, 1_714_521_600_000, 1_746_057_600_000
DAY, HOUR, MIN = 86_400_000, 3_600_000, 60_000
NOV_2026 = 1_793_491_200_000


def get(sim: RunningSimulator, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(sim.url + path, timeout=20) as r:  # noqa: S310 (loopback)
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def file_path(family: str, symbol: str, interval: str, period: str) -> str:
    kind = "daily" if period.count("-") == 2 else "monthly"
    return f"{ARCHIVE}/{family}/{kind}/klines/{symbol}/{interval}/{symbol}-{interval}-{period}.zip"


def csv_lines(sim: RunningSimulator, path: str) -> list[str]:
    status, body = get(sim, path)
    assert status == 200, (path, body[:200])
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        (name,) = z.namelist()
        assert name == path.rsplit("/", 1)[1].removesuffix(".zip") + ".csv"
        return z.read(name).decode().splitlines()


def as_rest(line: str, microseconds: bool) -> list[object]:
    """An archive row as the REST row it must equal: times in ms, decimals compared as numbers."""
    fields = line.split(",")
    scale = 1000 if microseconds else 1
    return [
        int(fields[0]) // scale, *(Decimal(f) for f in fields[1:6]), int(fields[6]) // scale,
        Decimal(fields[7]), int(fields[8]), Decimal(fields[9]), Decimal(fields[10]), fields[11],
    ]  # fmt: skip


def rest(
    sim: RunningSimulator, futures: bool, symbol: str, interval: str, lo: int, hi: int
) -> list:
    """Every REST kline with open time in [lo, hi), paged as a client pages."""
    path = "/fapi/v1/klines" if futures else "/api/v3/klines"
    rows: list[list[object]] = []
    while lo < hi:
        status, _, page = http_get(
            sim.url, path, symbol=symbol, interval=interval, startTime=lo, endTime=hi - 1,
            limit=1000,
        )  # fmt: skip
        assert status == 200
        if not page:
            break
        rows += [[r[0], *(Decimal(v) for v in r[1:6]), r[6], Decimal(r[7]), r[8],
                  Decimal(r[9]), Decimal(r[10]), r[11]] for r in page]  # fmt: skip
        lo = page[-1][0] + 1
    return rows


@pytest.mark.parametrize(
    ("family", "interval", "period", "lo", "hi", "microseconds", "header"),
    [
        ("spot", "1h", "2024-05", MAY_2024, MAY_2024 + 31 * DAY, False, False),
        ("spot", "1h", "2025-05", MAY_2025, MAY_2025 + 31 * DAY, True, False),
        ("spot", "1m", "2025-05-02", MAY_2025 + DAY, MAY_2025 + 2 * DAY, True, False),
        ("futures/um", "1h", "2022-05", MAY_2022, MAY_2022 + 31 * DAY, False, False),
        ("futures/um", "1h", "2024-05", MAY_2024, MAY_2024 + 31 * DAY, False, True),
        ("futures/um", "1m", "2024-05-02", MAY_2024 + DAY, MAY_2024 + 2 * DAY, False, True),
    ],
)
def test_an_archive_file_holds_exactly_the_rest_klines_of_its_span(
    sim: RunningSimulator, family: str, interval: str, period: str, lo: int, hi: int,
    microseconds: bool, header: bool,
) -> None:  # fmt: skip
    lines = csv_lines(sim, file_path(family, "BTCUSDT", interval, period))
    if header:
        assert lines[0].startswith("open_time,open,high,low,close,volume,close_time,")
        lines = lines[1:]
    assert lines[0][0].isdigit()
    # spot files from 2025 give open and close times in microseconds
    assert len(lines[0].split(",")[0]) == (16 if microseconds else 13)
    assert [as_rest(line, microseconds) for line in lines] == rest(
        sim, family != "spot", "BTCUSDT", interval, lo, hi
    )


def test_the_checksum_file_names_the_zip_and_holds_its_sha256(sim: RunningSimulator) -> None:
    path = file_path("spot", "ETHUSDT", "1d", "2024-05")
    status, zipped = get(sim, path)
    status_sum, checksum = get(sim, path + ".CHECKSUM")
    assert (status, status_sum) == (200, 200)
    assert checksum.decode() == f"{hashlib.sha256(zipped).hexdigest()}  ETHUSDT-1d-2024-05.zip\n"


def test_files_are_published_once_their_span_has_ended(sim: RunningSimulator) -> None:
    # the clock is at 2026-11-20 12:34: November's monthly file is not out yet, its days
    # up to the 19th are, the 20th (in progress) is not
    assert get(sim, file_path("spot", "BTCUSDT", "1m", "2026-11"))[0] == 404
    assert get(sim, file_path("spot", "BTCUSDT", "1m", "2026-10"))[0] == 200
    assert get(sim, file_path("spot", "BTCUSDT", "1m", "2026-11-19"))[0] == 200
    assert get(sim, file_path("spot", "BTCUSDT", "1m", "2026-11-20"))[0] == 404
    # nothing before a market's listing, nor for a market the exchange does not list
    assert get(sim, file_path("spot", "BTCUSDT", "1m", "2015-05"))[0] == 404
    assert get(sim, file_path("spot", "NOSUCHUSDT", "1m", "2024-05"))[0] == 404
    # nor for a path the real host does not have
    assert get(sim, f"{ARCHIVE}/spot/monthly/klines/BTCUSDT/7m/BTCUSDT-7m-2024-05.zip")[0] == 404
    assert get(sim, f"{ARCHIVE}/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-13.zip")[0] == 404


def test_a_short_file_lacks_candles_that_rest_still_serves(sim: RunningSimulator) -> None:
    lost = {"symbol": "BTCUSDT", "start_ms": MAY_2024 + 10 * HOUR, "end_ms": MAY_2024 + 12 * HOUR}
    admin(sim.url, "faults", {"archive_holes": [lost]})
    lines = csv_lines(sim, file_path("spot", "BTCUSDT", "1m", "2024-05-01"))
    assert len(lines) == 1440 - 120
    assert len(rest(sim, False, "BTCUSDT", "1m", MAY_2024, MAY_2024 + DAY)) == 1440


def test_archive_faults_a_wrong_checksum_a_truncated_zip_and_a_missing_month(
    sim: RunningSimulator,
) -> None:
    broken = file_path("spot", "BTCUSDT", "1h", "2024-06")
    missing = file_path("spot", "BTCUSDT", "1h", "2024-07")
    admin(sim.url, "faults", {
        "archive_bad_checksum": ["BTCUSDT-1h-2024-05"],
        "fail": [{"path": broken, "garble": "truncated", "count": -1},
                 {"path": missing, "status": 404, "count": -1}],
    })  # fmt: skip
    path = file_path("spot", "BTCUSDT", "1h", "2024-05")
    zipped, checksum = get(sim, path)[1], get(sim, path + ".CHECKSUM")[1]
    assert checksum.split()[0].decode() != hashlib.sha256(zipped).hexdigest()
    zipfile.ZipFile(io.BytesIO(zipped)).testzip()  # the zip itself is sound

    status, body = get(sim, broken)
    assert status == 200
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(body))
    assert get(sim, missing)[0] == 404
    # the month after is untouched by either rule
    assert get(sim, file_path("spot", "BTCUSDT", "1h", "2024-08"))[0] == 200


def test_archive_downloads_cost_no_request_weight(sim: RunningSimulator) -> None:
    for day in range(1, 6):
        assert get(sim, file_path("spot", "BTCUSDT", "1m", f"2024-05-0{day}"))[0] == 200
    status, headers, _ = http_get(sim.url, "/api/v3/klines", symbol="BTCUSDT", interval="1m",
                                  limit=1000)  # fmt: skip
    assert status == 200
    assert headers["X-MBX-USED-WEIGHT-1M"] == "2"  # the klines request alone
    stats = admin(sim.url, "stats")["requests"]
    assert stats[f"{ARCHIVE}/spot/daily/klines"] == {"200": 5}


def test_a_replayed_market_comes_out_of_the_archive_as_out_of_rest(tmp_path: Path) -> None:
    start = 1_699_999_200_000  # 2023-11-14 22:00, on the hour
    rows = [[start + i * MIN, f"{100 + i}.5", f"{101 + i}.25", f"{99 + i}.125", f"{100 + i}.75",
             f"{i}.001"] for i in range(90) if i != 4]  # fmt: skip
    (tmp_path / "btc.csv").write_text(
        "ts,open,high,low,close,volume\n" + "\n".join(",".join(map(str, r)) for r in rows)
    )
    simulator = Simulator(
        Faults(), Clock(fixed_ms=NOW_MS), replay={"BTCUSDT": tmp_path / "btc.csv"}
    )
    with RunningSimulator(simulator) as s:
        lines = csv_lines(s, file_path("spot", "BTCUSDT", "1m", "2023-11-14"))
        assert len(lines) == 89  # the file's minutes of that day, the missing one missing
        assert [as_rest(line, False) for line in lines] == rest(
            s, False, "BTCUSDT", "1m", start - 22 * HOUR, start + 2 * HOUR
        )
        hourly = csv_lines(s, file_path("spot", "BTCUSDT", "1h", "2023-11"))
        assert [as_rest(line, False) for line in hourly] == rest(
            s, False, "BTCUSDT", "1h", start, start + 2 * HOUR
        )


def test_an_archive_directory_keeps_built_files_and_serves_them_later(tmp_path: Path) -> None:
    """`--archive-dir`: files built at once (a lock per file, not one for all) are kept in
    the directory, and a later simulator serves them from there, as the real host serves
    prebuilt files: what the directory holds is what is served, checksum included."""
    months = ("2024-05", "2024-06", "2024-07", "2024-08")
    paths = [file_path("spot", "BTCUSDT", "1h", m) for m in months]
    clock = Clock(fixed_ms=NOW_MS)
    with (
        RunningSimulator(Simulator(Faults(), clock, archive_dir=tmp_path)) as first,
        ThreadPoolExecutor(len(paths)) as pool,
    ):
        built = [body for _, body in pool.map(lambda p: get(first, p), paths)]
    assert all(body[:2] == b"PK" for body in built) and len(set(built)) == 4
    kept = {k.read_bytes(): k for k in tmp_path.glob("*.zip")}
    assert set(kept) == set(built)
    kept[built[0]].write_bytes(b"PK a file of the directory")
    with RunningSimulator(Simulator(Faults(), clock, archive_dir=tmp_path)) as later:
        assert get(later, paths[0]) == (200, b"PK a file of the directory")
        digest = hashlib.sha256(b"PK a file of the directory").hexdigest()
        name = paths[0].rsplit("/", 1)[1]
        assert get(later, paths[0] + ".CHECKSUM") == (200, f"{digest}  {name}\n".encode())
        assert get(later, paths[1]) == (200, built[1])
