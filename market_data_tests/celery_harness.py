"""A throwaway RabbitMQ of a test's own (its own port, node name and data directory, so the
test may stop and restart it) and Celery run workers as real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from celery import Celery

from market_data_tests.helpers import free_port

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
# Debian's rabbitmq-server script drops to the rabbitmq user when started as root; its
# server script proper runs as whoever starts it.
SERVER = next(
    (p for p in ("/usr/lib/rabbitmq/bin/rabbitmq-server", "/usr/sbin/rabbitmq-server")
     if os.access(p, os.X_OK)),
    "rabbitmq-server",
)  # fmt: skip


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


class Broker:
    """rabbitmq-server on a free port, its data kept in ``root`` across restarts (durable
    queues and persistent messages survive a stop, as on a real host)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port, self.dist = free_port(), free_port()
        self.name = f"md{self.port}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        for sub in ("mnesia", "log"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "enabled_plugins").write_text("[].\n")
        (root / "rabbitmq.conf").write_text(f"listeners.tcp.default = {self.port}\n")

    def start(self, timeout: float = 90) -> Broker:
        env = {**os.environ, "HOME": str(self.root), "RABBITMQ_NODENAME": self.name,
               "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(self.dist),
               "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
               "RABBITMQ_LOG_BASE": str(self.root / "log"),
               "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
               "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq")}  # fmt: skip
        out = open(self.root / "server.log", "ab")  # noqa: SIM115 (kept open for the process)
        self.proc = subprocess.Popen(
            [SERVER], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while not _answers(self.port):
            assert self.proc.poll() is None, (self.root / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "rabbitmq-server did not start"
            time.sleep(0.25)
        return self

    def stop(self) -> None:
        """SIGTERM to the server's process group (the Erlang VM), SIGKILL if it lingers."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        while _answers(self.port):
            time.sleep(0.1)
        self.proc = None


class Worker:
    """`celery -A market_data.workers worker` for ``queue``, named ``name@<host>``."""

    def __init__(
        self, name: str, queue: str, env: dict[str, str], log: Path, concurrency: int = 2
    ) -> None:
        self.name = f"{name}@{socket.gethostname()}"
        self.queue = queue
        out = open(log, "ab")  # noqa: SIM115 (kept open for the process)
        self.proc = subprocess.Popen(
            [str(BIN / "celery"), "-A", "market_data.workers", "worker", "-Q", queue,
             "-n", f"{name}@%h", "-c", str(concurrency), "--loglevel", "INFO", "--without-mingle",
             "--without-gossip"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def kill(self) -> None:
        """kill -9 of the worker and its pool processes at once: a host that vanished."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


def control(broker_url: str) -> Celery:
    """A Celery app to ask the workers what they run (a connection for each question: the
    broker may have restarted since the last)."""
    app = Celery(broker=broker_url)
    app.conf.broker_pool_limit = 0
    return app


def wait_workers(app: Celery, names: list[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        replies = app.control.inspect(timeout=1.0).ping() or {}
        if set(names) <= set(replies):
            return
        assert time.monotonic() < deadline, f"workers up: {sorted(replies)} of {names}"
        time.sleep(1)
