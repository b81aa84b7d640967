"""How fast the simulator serves pages of 1000 1m candles (target: >= 300 pages/s, one core).

The simulator runs as its own process (`market-data simulate`), so it has one core to itself;
the client here reads raw bodies over keep-alive HTTP connections, walking a year of windows,
so no page is served twice. Prints pages per second and the server's CPU seconds per page.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

PAGES = int(os.environ.get("BENCH_PAGES", "1500"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "2"))
START = 1_735_689_600_000  # 2025-01-01


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(port: int, pages: range, sizes: list[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for i in pages:
        start = START + i * 60_000_000
        conn.request(
            "GET", f"/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={start}&limit=1000"
        )
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, body[:200]
        sizes.append(len(body))


def main() -> None:
    port = free_port()
    exe = Path(sys.executable).with_name("market-data")
    server = subprocess.Popen(
        [str(exe), "simulate", "--port", str(port)], stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        fetch(port, range(PAGES, PAGES + 20), [])  # warm up
        cpu0 = _cpu_seconds(server.pid)
        sizes: list[int] = []
        per = PAGES // CLIENTS
        threads = [
            threading.Thread(target=fetch, args=(port, range(c * per, (c + 1) * per), sizes))
            for c in range(CLIENTS)
        ]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        cpu = _cpu_seconds(server.pid) - cpu0
    finally:
        server.terminate()
        server.wait(10)
    kib = sum(sizes) / len(sizes) / 1024
    print(f"pages served:            {len(sizes)} x 1000 1m candles ({kib:.0f} KiB each)")
    print(f"wall seconds:            {wall:.2f}")
    print(f"pages per second:        {len(sizes) / wall:.0f}")
    print(f"server CPU ms per page:  {cpu / len(sizes) * 1000:.2f}")
    print(f"pages per server CPU-s:  {len(sizes) / cpu:.0f}   (target >= 300)")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
