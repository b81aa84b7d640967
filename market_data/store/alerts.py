"""Alerts in the store: incidents as sent, the outbox of messages to deliver, and events that
runs report (bans, repeated rate limits). No webhook URL is ever stored: targets by name."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from market_data.domain.alerts import ONE_OFF, Incident, Message, OpenIncident
from market_data.store.tables import alert_events, alert_incidents, alert_outbox

_i, _o, _e = alert_incidents.c, alert_outbox.c, alert_events.c


@dataclass(frozen=True)
class Outgoing:
    """A message waiting for one target."""

    id: str
    target: str
    payload: str
    attempts: int


@dataclass(frozen=True)
class RunEvent:
    kind: str
    exchange: str
    run_id: str
    detail: str
    at: int


class AlertStore:
    def __init__(self, engine: sa.Engine, dialect: Any) -> None:
        self.engine = engine

    # -- incidents ---------------------------------------------------------------------
    def open_incidents(self) -> dict[str, OpenIncident]:
        query = sa.select(_i.incident_key, _i.kind, _i.summary, _i.last_sent_at).where(
            _i.resolved_at.is_(None)
        )
        with self.engine.connect() as conn:
            return {k: OpenIncident(k, kind, s, int(t)) for k, kind, s, t in conn.execute(query)}

    def known(self, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` were ever recorded (one-off incidents are sent once, ever)."""
        keys = list(keys)
        found: set[str] = set()
        with self.engine.connect() as conn:
            for i in range(0, len(keys), 500):
                query = sa.select(_i.incident_key).where(_i.incident_key.in_(keys[i : i + 500]))
                found |= set(conn.execute(query).scalars())
        return found

    def record(
        self,
        opened: list[Incident],
        repeated: list[Incident],
        resolved: list[str],
        outgoing: list[tuple[str, Message, str]],
        now_ms: int,
    ) -> None:
        """One tick, in one transaction: incidents opened (or reopened; a one-off one is
        recorded resolved at once), sent again and resolved, and the messages queued for each
        target (target name, message, payload)."""
        with self.engine.begin() as conn:
            for inc in opened:
                conn.execute(sa.delete(alert_incidents).where(_i.incident_key == inc.key))
                conn.execute(
                    sa.insert(alert_incidents).values(
                        incident_key=inc.key,
                        kind=inc.kind,
                        summary=inc.summary,
                        opened_at=now_ms,
                        last_sent_at=now_ms,
                        resolved_at=now_ms if inc.kind in ONE_OFF else None,
                    )
                )
            for inc in repeated:
                conn.execute(
                    sa.update(alert_incidents)
                    .where(_i.incident_key == inc.key)
                    .values(last_sent_at=now_ms)
                )
            for key in resolved:
                conn.execute(
                    sa.update(alert_incidents)
                    .where(_i.incident_key == key)
                    .values(resolved_at=now_ms)
                )
            for target, message, payload in outgoing:
                conn.execute(
                    sa.insert(alert_outbox).values(
                        id=str(uuid.uuid4()),
                        target=target,
                        kind=message.kind,
                        status=message.status,
                        payload=payload,
                        created_at=now_ms,
                        attempts=0,
                        next_try_at=now_ms,
                        delivered_at=None,
                        last_error=None,
                    )
                )

    # -- the outbox --------------------------------------------------------------------
    def due(self, now_ms: int, limit: int = 200) -> list[Outgoing]:
        query = (
            sa.select(_o.id, _o.target, _o.payload, _o.attempts)
            .where(_o.delivered_at.is_(None), _o.next_try_at <= now_ms)
            .order_by(_o.created_at, _o.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [Outgoing(*row) for row in conn.execute(query)]

    def delivered(self, id_: str, now_ms: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(alert_outbox)
                .where(_o.id == id_)
                .values(delivered_at=now_ms, attempts=_o.attempts + 1, last_error=None)
            )

    def failed(self, id_: str, error: str, next_try_ms: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(alert_outbox)
                .where(_o.id == id_)
                .values(attempts=_o.attempts + 1, next_try_at=next_try_ms, last_error=error[:500])
            )

    def undelivered(self) -> dict[str, Any]:
        """Messages not delivered yet: how many, the oldest's age and its last error."""
        query = (
            sa.select(_o.created_at, _o.target, _o.last_error)
            .where(_o.delivered_at.is_(None))
            .order_by(_o.created_at)
        )
        count = sa.select(sa.func.count()).where(_o.delivered_at.is_(None))
        with self.engine.connect() as conn:
            n = int(conn.execute(count).scalar() or 0)
            oldest = conn.execute(query.limit(1)).first()
        if oldest is None:
            return {"undelivered": 0}
        return {
            "undelivered": n,
            "oldest_created_at": int(oldest[0]),
            "target": oldest[1],
            "last_error": oldest[2],
        }

    def outbox(self) -> list[dict[str, Any]]:
        """Every message, oldest first (tests and `market-data alerts list`)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(alert_outbox).order_by(_o.created_at, _o.id))
            return [dict(r._mapping) for r in rows]

    def prune(self, before_ms: int) -> None:
        """Forget what ended before ``before_ms``: delivered messages, resolved incidents
        and reported events (the sensor looks back a day at most)."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(alert_outbox).where(_o.delivered_at < before_ms))
            conn.execute(sa.delete(alert_incidents).where(_i.resolved_at < before_ms))
            conn.execute(sa.delete(alert_events).where(_e.at < before_ms))

    # -- events reported by runs -------------------------------------------------------
    def report(self, kind: str, exchange: str, run_id: str, detail: str, now_ms: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(alert_events).values(
                    id=str(uuid.uuid4()),
                    kind=kind,
                    exchange=exchange,
                    run_id=run_id,
                    detail=detail,
                    at=now_ms,
                )
            )

    def events_since(self, since_ms: int) -> list[RunEvent]:
        query = (
            sa.select(_e.kind, _e.exchange, _e.run_id, _e.detail, _e.at)
            .where(_e.at >= since_ms)
            .order_by(_e.at)
        )
        with self.engine.connect() as conn:
            return [RunEvent(k, ex, r, d, int(a)) for k, ex, r, d, a in conn.execute(query)]
