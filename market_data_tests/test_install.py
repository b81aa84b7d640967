"""The package as a user installs it: a wheel (not an editable install) in a fresh virtualenv,
used from a directory outside the checkout. Nothing is downloaded: the wheel is built with
the tools already in .venv, and the fresh venv sees .venv's dependencies through a .pth."""

from __future__ import annotations

import os
import shutil
import signal
import site
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa
import yaml

from market_data_tests.helpers import admin, free_port

ROOT = Path(__file__).resolve().parents[1]
VENV_PIP = Path(sys.executable).with_name("pip")


def _run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=300, **kwargs
    )  # type: ignore[call-overload]


def test_the_wheel_installs_and_works_outside_the_checkout(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for item in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / item, src / item)
    for item in ("market_data", "sql"):
        shutil.copytree(ROOT / item, src / item, ignore=shutil.ignore_patterns("__pycache__"))
    built = _run(VENV_PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp_path / "dist", src)  # fmt: skip
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("market_data-*.whl"))

    venv = tmp_path / "venv"
    assert _run(sys.executable, "-m", "venv", "--without-pip", venv).returncode == 0
    python = venv / "bin" / "python"
    installed = _run(VENV_PIP, "--python", python, "install", "--no-deps", "--no-index", wheel)
    assert installed.returncode == 0, installed.stderr
    # the dependencies (dagster, ccxt, ...) as already installed, without downloading them
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    Path(purelib.stdout.strip(), "deps.pth").write_text(site.getsitepackages()[0] + "\n")

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MARKET_DATA", "DAGSTER"))}
    where = _run(python, "-c", "import market_data; print(market_data.__file__)", cwd=work, env=env)
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr  # not the checkout

    exe = venv / "bin" / "market-data"
    env["DATABASE_URL"] = f"sqlite:///{tmp_path}/candles.sqlite"
    init = _run(exe, "db", "init", cwd=work, env=env)
    assert init.returncode == 0, init.stderr
    assert "applied 001_candles.sql" in init.stdout
    engine = sa.create_engine(env["DATABASE_URL"])
    assert {"candles", "fetch_coverage", "instruments", "candle_gaps"} <= set(
        sa.inspect(engine).get_table_names()
    )

    port = free_port()
    sim = subprocess.Popen(
        [exe, "simulate", "--port", str(port), "--fixed-clock", "2026-11-20T12:00Z"],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                admin(url, "stats")
                break
            except OSError:
                time.sleep(0.1)
        home = tmp_path / "dagster_home"
        home.mkdir()
        config = tmp_path / "watchlist.yaml"
        config.write_text(yaml.safe_dump({"start": "2026-10-01", "exchanges": {"binance": {
            "base_url": url, "rate_limit_ms": 0, "markets": ["BTC/USDT/1d"]}}}))  # fmt: skip
        env |= {"DAGSTER_HOME": str(home), "MARKET_DATA_CONFIG": str(config)}
        done = _run(exe, "backfill", "--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1d",
                    "--start", "2026-10-01", "--end", "2026-11-01", cwd=work, env=env)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "31 rows written" in done.stdout
    finally:
        sim.send_signal(signal.SIGTERM)
        assert sim.wait(15) is not None
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM candles")).scalar() == 31
    engine.dispose()
