"""The exit contract of every long-running command (README, "Stopping the services"): SIGINT
or SIGTERM by PID shuts it down cleanly, it says so, and the process exits 0, whatever the
server library underneath does with the signal."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from market_data.simulator.server import RunningSimulator
from market_data.store.candles import CandleStore
from market_data_tests.helpers import cli_env, cli_process, free_port


def _answers(url: str) -> Callable[[], bool]:
    """Any HTTP answer (the API's /health says 503 while the store has no schema)."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=5):  # noqa: S310 (loopback only)
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    return check


def _wait_serving(proc: subprocess.Popen[str], ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if ready():
            return
        time.sleep(0.2)
    proc.kill()
    out, err = proc.communicate()
    raise AssertionError(f"not serving within 60 s:\n{out[-2000:]}\n{err[-2000:]}")


def _stopped_by(proc: subprocess.Popen[str], sig: signal.Signals, name: str) -> None:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    assert f"{name}: stopped" in out, out
    assert "Traceback" not in err, err


SIGNALS = [signal.SIGINT, signal.SIGTERM]


#: HTTP servers: the command, the name it stops with, a path that answers once it serves
SERVERS = {"simulate": ("simulator", "/api/v3/time"), "api": ("api", "/health")}


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
@pytest.mark.parametrize("command", SERVERS)
def test_a_server_exits_0_on(command: str, sig: signal.Signals, tmp_path: Path) -> None:
    name, path = SERVERS[command]
    port = free_port()
    env = cli_env(tmp_path, "http://unused", f"sqlite:///{tmp_path}/c.sqlite", ["BTC/USDT/1h"])
    proc = cli_process(env, command, "--port", str(port))
    _wait_serving(proc, _answers(f"http://127.0.0.1:{port}{path}"))
    _stopped_by(proc, sig, name)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_the_live_service_exits_0_on(
    sig: signal.Signals, sim: RunningSimulator, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/c.sqlite"
    env = cli_env(tmp_path, sim.url, url, ["BTC/USDT/1m"], start="2026-11-20")
    proc = cli_process(env, "live")
    store = CandleStore(url)

    def connected() -> bool:
        service = store.live.service("binance")
        return service is not None and service.connected >= 1

    _wait_serving(proc, connected)
    _stopped_by(proc, sig, "live")
