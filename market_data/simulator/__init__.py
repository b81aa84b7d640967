"""A local exchange: an HTTP server that speaks Binance's wire format on 127.0.0.1.

It knows nothing of its clients; the real ccxt client talks to it with its URLs rewritten.
"""
