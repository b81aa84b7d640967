"""The SQL store (SQLAlchemy): schema, bulk upserts, coverage queries. No Dagster here."""
