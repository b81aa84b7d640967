"""The HTTP status API (starlette, served by uvicorn): health, ingestion status, gaps and
Prometheus metrics, from the same collection as `market-data status` (pipeline/status.py)."""
