"""Alerts (pure): incidents, when each is sent, how a storm becomes one message, and the two
payload shapes (a generic JSON POST, Slack's incoming webhook).

An incident is a condition a person must see, under a stable key: a run that failed for
good, a gap still open after its repairs, a stale market, the live service down, a ban or
repeated rate limits, a crossed order book. It is sent once when it opens, again only after
``repeat_after_s`` while it lasts, and once more when it resolves. One-off incidents (a
failed run, a ban in a run) never resolve: they are sent once. Many incidents of one kind
opening together (an exchange down: hundreds of markets stale) are one message that counts
them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: incident kinds, in the order messages are sent
KINDS = ("run_failed", "gap_open", "stale", "live_down", "ban", "rate_limited", "crossed_book")
TITLES = {
    "run_failed": "run failed",
    "gap_open": "gap still open after its repairs",
    "stale": "market stale",
    "live_down": "live service down",
    "ban": "exchange ban (418)",
    "rate_limited": "repeated rate limits (429) in one run",
    "crossed_book": "crossed order book",
}
#: kinds that are events (sent once, never resolved), the others are states
ONE_OFF = frozenset({"run_failed", "ban", "rate_limited"})
LISTED = 20  # incidents named in a storm message, at most


@dataclass(frozen=True)
class Target:
    """Where alerts go: a webhook whose URL is a secret, read from ``url_env``."""

    name: str
    kind: Literal["json", "slack"]
    url_env: str


@dataclass(frozen=True)
class AlertSettings:
    targets: tuple[Target, ...] = ()
    #: the Dagster UI's address, for links to runs (none: no links)
    ui_url: str | None = None
    #: a market is stale for alerting when its newest candle is this many timeframes behind
    stale_after_timeframes: float = 3.0
    #: an incident still open is sent again after this long
    repeat_after_s: int = 3600
    #: more incidents of one kind opening in one tick than this: one message counting them
    storm_after: int = 5
    #: 429s in one run from which an alert is sent (a ban, 418, always is)
    rate_limits_per_run: int = 3
    #: seconds a webhook may take to answer; an undelivered message is retried next ticks
    timeout_s: float = 5.0
    #: first wait before an undelivered message is tried again; doubles, at most an hour
    retry_base_s: float = 30.0

    def run_link(self, run_id: str) -> str | None:
        """The run's page in the Dagster UI (None without ``ui_url``)."""
        return f"{self.ui_url}/runs/{run_id}" if self.ui_url else None


@dataclass(frozen=True)
class Incident:
    key: str  # stable: the same condition has the same key on every tick
    kind: str  # one of KINDS
    exchange: str | None
    summary: str  # one line
    fields: tuple[tuple[str, str], ...] = ()
    link: str | None = None


@dataclass(frozen=True)
class OpenIncident:
    """An incident as recorded: when it was last sent."""

    key: str
    kind: str
    summary: str
    last_sent_ms: int


@dataclass(frozen=True)
class Message:
    status: Literal["firing", "resolved", "test"]
    kind: str
    title: str
    text: str
    incidents: tuple[Incident, ...] = ()
    count: int = 1

    def as_json(self) -> dict[str, Any]:
        """The generic payload: everything, machine-readable."""
        return {
            "source": "market-data",
            "status": self.status,
            "kind": self.kind,
            "title": self.title,
            "text": self.text,
            "count": self.count,
            "incidents": [
                {
                    "key": i.key,
                    "exchange": i.exchange,
                    "summary": i.summary,
                    **dict(i.fields),
                    **({"link": i.link} if i.link else {}),
                }
                for i in self.incidents
            ],
        }

    def as_slack(self) -> dict[str, Any]:
        """Slack's incoming-webhook shape (``text`` with mrkdwn), which most chat tools take."""
        mark = {"firing": ":rotating_light:", "resolved": ":white_check_mark:"}.get(
            self.status, ":information_source:"
        )
        lines = [f"{mark} *{self.title}*", self.text]
        for i in self.incidents[:LISTED]:
            link = f" <{i.link}|open run>" if i.link else ""
            extra = ", ".join(f"{k}: {v}" for k, v in i.fields)
            lines.append(f"• {i.summary}{link}" + (f" ({extra})" if extra else ""))
        if len(self.incidents) > LISTED:
            lines.append(f"… and {len(self.incidents) - LISTED} more")
        return {"text": "\n".join(lines)}

    def payload(self, kind: str) -> str:
        return json.dumps(self.as_slack() if kind == "slack" else self.as_json())


@dataclass
class Plan:
    """What one tick sends, and how the recorded incidents change."""

    messages: list[Message] = field(default_factory=list)
    opened: list[Incident] = field(default_factory=list)  # recorded as sent now
    repeated: list[Incident] = field(default_factory=list)  # last sent moves to now
    resolved: list[OpenIncident] = field(default_factory=list)  # recorded as resolved


def plan(
    active: Iterable[Incident],
    recorded: Mapping[str, OpenIncident],
    now_ms: int,
    settings: AlertSettings,
) -> Plan:
    """The tick's messages: incidents new since the last tick (grouped by kind, a storm as one
    message), those still open past ``repeat_after_s``, and those recorded open that are no
    longer active (resolved)."""
    out = Plan()
    active = {i.key: i for i in active}
    new = [i for k, i in active.items() if k not in recorded]
    due = [
        i
        for k, i in active.items()
        if k in recorded
        and i.kind not in ONE_OFF
        and now_ms - recorded[k].last_sent_ms >= settings.repeat_after_s * 1000
    ]
    gone = [r for k, r in recorded.items() if k not in active and r.kind not in ONE_OFF]
    out.opened, out.repeated, out.resolved = new, due, gone
    out.messages += _grouped("firing", new, settings)
    out.messages += _grouped("firing", due, settings, again=True)
    resolved = [Incident(r.key, r.kind, None, r.summary) for r in gone]
    out.messages += _grouped("resolved", resolved, settings)
    return out


def _grouped(
    status: Literal["firing", "resolved"],
    incidents: list[Incident],
    settings: AlertSettings,
    again: bool = False,
) -> list[Message]:
    by_kind: dict[str, list[Incident]] = defaultdict(list)
    for i in incidents:
        by_kind[i.kind].append(i)
    out = []
    for kind in sorted(by_kind, key=lambda k: KINDS.index(k) if k in KINDS else len(KINDS)):
        group = sorted(by_kind[kind], key=lambda i: i.key)
        title = TITLES.get(kind, kind) + (" (resolved)" if status == "resolved" else "")
        title += " (still open)" if again else ""
        if len(group) > settings.storm_after:
            exchanges = sorted({i.exchange for i in group if i.exchange})
            where = f" on {', '.join(exchanges)}" if exchanges else ""
            text = f"{len(group)} incidents at once{where}"
            out.append(
                Message(status, kind, f"{title}: {len(group)}", text, tuple(group), len(group))
            )
        else:
            out += [Message(status, kind, title, i.summary, (i,)) for i in group]
    return out


def retry_delay_s(attempts: int, settings: AlertSettings) -> float:
    """Wait before the next try of a message that failed ``attempts`` times."""
    return min(3600.0, settings.retry_base_s * 2 ** max(0, attempts - 1))
