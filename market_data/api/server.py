"""Serving the status API with uvicorn: Ctrl-C and SIGTERM stop it cleanly. The status
report is refreshed in a background thread (every half ``report_max_age_s``), so requests
answer from memory."""

from __future__ import annotations

import logging
import threading

import uvicorn

from market_data.api.app import Sources, StatusApi, create_app

log = logging.getLogger(__name__)


def _refresher(api: StatusApi, every_s: float, stopped: threading.Event) -> None:
    while not stopped.wait(every_s):
        try:
            api.refresh()
        except Exception:  # the next request reports it; the refresher goes on
            log.exception("status report refresh failed")


def serve(sources: Sources, host: str, port: int) -> None:
    app = create_app(sources)
    stopped = threading.Event()
    if sources.report_max_age_s > 0:
        every = sources.report_max_age_s / 2
        threading.Thread(
            target=_refresher, args=(app.state.api, every, stopped), daemon=True
        ).start()
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=True)
    finally:
        stopped.set()
