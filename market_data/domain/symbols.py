"""Standard market names: BASE-QUOTE-SPOT, BASE-QUOTE-PERP, BASE-QUOTE-FUTURE_YYMMDD.

ccxt's unified symbols (BTC/USDT, BTC/USDT:USDT, BTC/USDT:USDT-261225) map to them and back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Asset aliases some exchanges use, normalised to the common code (XBT: Kraken's BTC;
#: UST: Bitfinex's USDT, which ccxt translates in its symbols but a user may type as listed).
ASSET_ALIASES: dict[str, str] = {
    "XBT": "BTC", "XDG": "DOGE", "BCHABC": "BCH", "BCC": "BCH", "UST": "USDT",
}  # fmt: skip

_CCXT = re.compile(r"^([A-Z0-9]+)/([A-Z0-9]+)(?::([A-Z0-9]+)(?:-(\d{6}))?)?$")
_STANDARD = re.compile(r"^([A-Z0-9]+)-([A-Z0-9]+)-(SPOT|PERP|FUTURE_(\d{6}))$")


class MalformedSymbolError(ValueError):
    pass


def normalise_asset(code: str) -> str:
    code = code.strip().upper()
    return ASSET_ALIASES.get(code, code)


@dataclass(frozen=True, order=True)
class Symbol:
    """A market in standard form. ``settle`` is the margin asset of a derivative."""

    base: str
    quote: str
    kind: str  # "SPOT", "PERP" or "FUTURE"
    expiry: str | None = None  # YYMMDD, futures only
    settle: str | None = None

    @property
    def standard(self) -> str:
        suffix = f"FUTURE_{self.expiry}" if self.kind == "FUTURE" else self.kind
        return f"{self.base}-{self.quote}-{suffix}"

    @property
    def ccxt(self) -> str:
        if self.kind == "SPOT":
            return f"{self.base}/{self.quote}"
        settle = self.settle or self.quote
        tail = f"-{self.expiry}" if self.kind == "FUTURE" else ""
        return f"{self.base}/{self.quote}:{settle}{tail}"

    def __str__(self) -> str:
        return self.standard


def parse_symbol(text: str) -> Symbol:
    """Accepts ccxt unified (BTC/USDT, BTC/USDT:USDT, BTC/USDT:USDT-261225) or standard
    (BTC-USDT-SPOT, BTC-USDT-PERP, BTC-USDT-FUTURE_261225) names."""
    raw = text.strip().upper() if isinstance(text, str) else ""
    if m := _CCXT.match(raw):
        base, quote = normalise_asset(m.group(1)), normalise_asset(m.group(2))
        settle, expiry = m.group(3), m.group(4)
        if settle is None:
            return Symbol(base, quote, "SPOT")
        kind = "FUTURE" if expiry else "PERP"
        return Symbol(base, quote, kind, expiry, normalise_asset(settle))
    if m := _STANDARD.match(raw):
        base, quote = normalise_asset(m.group(1)), normalise_asset(m.group(2))
        kind = "FUTURE" if m.group(4) else m.group(3)
        return Symbol(base, quote, kind, m.group(4))
    raise MalformedSymbolError(
        f"malformed pair {text!r}: expected BASE/QUOTE (ccxt, e.g. BTC/USDT or BTC/USDT:USDT) "
        "or a standard name (BTC-USDT-SPOT, BTC-USDT-PERP, BTC-USDT-FUTURE_261225)"
    )


def symbol_matches(text: str, symbol: Symbol) -> bool:
    """Whether ``text`` names ``symbol``: its ccxt or standard name, or a compact pair as
    older tools and exchange APIs write it (BTCUSDT, btc-usdt, XBTUSDT), which names the
    pair in any kind (spot, perpetual, futures)."""
    try:
        return parse_symbol(text).standard == symbol.standard
    except MalformedSymbolError:
        pass
    compact = re.sub(r"[^A-Z0-9]", "", text.upper())
    for alias, code in ASSET_ALIASES.items():
        if compact.startswith(alias):
            compact = code + compact[len(alias) :]
    return compact == symbol.base + symbol.quote
