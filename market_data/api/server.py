"""Serving the status API with uvicorn: Ctrl-C and SIGTERM stop it cleanly."""

from __future__ import annotations

import uvicorn

from market_data.api.app import Sources, create_app


def serve(sources: Sources, host: str, port: int) -> None:
    uvicorn.run(create_app(sources), host=host, port=port, log_level="info", access_log=True)
