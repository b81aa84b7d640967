"""Shared fixtures: the exchange simulator over real HTTP, and real databases.

PostgreSQL: DATABASE_URL if it names a PostgreSQL server, else 127.0.0.1:5432 when it
answers, else a throwaway cluster started from the local binaries (initdb, pg_ctl). Each
test run creates its own database and drops it at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from market_data.exchanges.client import SyncExchangeClient
from market_data.simulator.book import Clock
from market_data.simulator.faults import Faults
from market_data.simulator.server import RunningSimulator, Simulator
from market_data_tests.helpers import binance_client, free_port

#: A fixed exchange clock for tests: 2026-11-20 12:34:56.789 UTC.
NOW_MS = 1_795_178_096_789

#: test files handed to the two workers first (a file each, `--dist loadfile`): the longest
#: (the end-to-end deployment: ~5 minutes; the Celery one: ~3) must not be the last to start
SLOW_FIRST = ("test_end_to_end.py", "test_dialects.py", "test_celery.py")


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle, which it keeps otherwise
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in SLOW_FIRST)  # (a stable sort)


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    with RunningSimulator(Simulator(Faults(), Clock(fixed_ms=NOW_MS))) as running:
        yield running


@pytest.fixture
def client(sim: RunningSimulator) -> Iterator[SyncExchangeClient]:
    """A client that makes one request per call (no retries), so errors show as they come."""
    with binance_client(sim.url, timeout_ms=5000, retry_attempts=1) as client:
        yield client


def _server_answers(url: str) -> bool:
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except sa.exc.OperationalError:
        return False


@dataclass
class Cluster:
    """A PostgreSQL cluster of our own, started from the local binaries (initdb, pg_ctl)."""

    base: Path
    port: int
    prefix: list[str]

    @property
    def url(self) -> str:
        """Its maintenance database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run([*self.prefix, "pg_ctl", "-D", str(self.base / "data"), *args],
                       check=True, capture_output=True)  # fmt: skip

    def start(self) -> None:
        self._pg_ctl("-l", str(self.base / "log"), "-w", "-o",
                     f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "-w", "stop")


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A cluster of our own (its own port and data directory), removed afterwards."""
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        pytest.fail("initdb/pg_ctl are not on PATH: no throwaway PostgreSQL cluster")
    base = Path(tempfile.mkdtemp(prefix="market-data-pg-"))
    # initdb refuses to run as root; the cluster then belongs to an unprivileged user.
    prefix: list[str] = []
    if os.geteuid() == 0:
        prefix = ["runuser", "-u", "nobody", "--"]
        shutil.chown(base, "nobody")
    subprocess.run(
        [*prefix, "initdb", "-D", str(base / "data"), "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
    )
    cluster = Cluster(base, free_port(), prefix)
    cluster.start()
    try:
        yield cluster
    finally:
        subprocess.run([*prefix, "pg_ctl", "-D", str(base / "data"), "-m", "immediate", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of a PostgreSQL server's maintenance database."""
    env = os.environ.get("DATABASE_URL", "")
    if env.startswith(("postgresql", "postgres:")):
        yield env.replace("postgresql://", "postgresql+psycopg://", 1)
        return
    local = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    if os.environ.get("MARKET_DATA_TEST_THROWAWAY_PG") != "1" and _server_answers(local):
        yield local
        return
    with throwaway_cluster() as cluster:
        yield cluster.url


@pytest.fixture(scope="session")
def pg_database(pg_server: str) -> Iterator[str]:
    """A database of this test run's own, dropped at the end."""
    name = f"md_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = pg_server.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A candle store of the test's own: a SQLite file, or this run's PostgreSQL database
    emptied before and after."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/candles.sqlite"
        return
    from market_data_tests.candle_harness import clear

    url = request.getfixturevalue("pg_database")
    clear(url)
    yield url
    clear(url)
