"""The ccxt boundary: building clients, mapping errors, retrying, paging. No Dagster here."""
