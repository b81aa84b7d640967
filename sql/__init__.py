"""The candle store schema: NNN_name.sql files applied in order, each once (store/schema.py).
Shipped inside the package as ``market_data.sql``."""
