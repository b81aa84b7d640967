"""The live service as Dagster sees it."""
