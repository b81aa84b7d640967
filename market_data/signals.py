"""The exit contract of the long-running commands (`market-data api`, `simulate`, `live`).

SIGINT (Ctrl-C) or SIGTERM (systemd's stop, Kubernetes' pod termination) asks the service to
stop; it shuts down cleanly, prints `<name>: stopped` and the process exits 0: a stop on
purpose is a success, so a supervisor restarts nothing and logs no failure. The contract is
kept here, not inherited from a server library: uvicorn, after its own clean shutdown,
raises the captured signal again (which would end the process by the signal, exit 143 or
130) or not, depending on its version; aiohttp's run_app and asyncio's signal handlers
return normally. A signal that arrives before the server has taken its own handlers (during
start-up) stops the command the same way.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import click

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(BaseException):
    """A stop signal: a BaseException, so no `except Exception` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signum)


@contextmanager
def stops_cleanly(name: str) -> Iterator[None]:
    """Run a service under the contract: the server inside installs its own handlers while
    it runs; before and after (a signal raised again after its shutdown), ours end the
    command with exit 0."""
    previous = {sig: signal.signal(sig, _stop) for sig in STOP_SIGNALS}
    try:
        yield
    except Stopped:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo(f"{name}: stopped")
