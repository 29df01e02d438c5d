"""`WorkerRegistry`: which workers are alive, what each runs, and the model they serve.

Workers write their row at start and refresh it every heartbeat; gateways read it for `/ready`,
`/metrics`, to learn the served model's description without loading it, and to place real-time
sessions (a worker that serves them registers its session URL and how many it takes).
Heartbeats are stamped and judged on the database's clock (`now()` in the SQL), never a
host's: a worker whose wall clock is off is neither counted dead nor kept alive by it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from psycopg_pool import ConnectionPool

from helios_serve.core.spec import ModelInfo
from helios_serve.core.types import Variant
from helios_serve.jobs.postgres.pool import Conn, transaction
from helios_serve.jobs.postgres.store import DB_NOW


def info_to_json(info: ModelInfo) -> str:
    data = asdict(info)
    data["variant"] = info.variant.value
    data["aliases"] = list(info.aliases)
    return json.dumps(data)


def info_from_json(text: str) -> ModelInfo:
    data = json.loads(text)
    data["variant"] = Variant(data["variant"])
    data["aliases"] = tuple(data.get("aliases", ()))
    return ModelInfo(**data)


@dataclass(frozen=True)
class SessionHost:
    worker: str
    url: str
    alive: bool = True
    token: str = field(default="", repr=False)
    """The worker's session-port credential (gateways present it as a bearer key)."""


class WorkerRegistry:
    def __init__(self, pool: ConnectionPool[Conn]):
        self._pool = pool

    def register(
        self,
        name: str,
        info: ModelInfo,
        session_url: str | None = None,
        max_sessions: int = 0,
        session_token: str | None = None,
    ) -> None:
        with transaction(self._pool) as conn:
            conn.execute(
                "INSERT INTO helios_workers (name, model_info, started_at, heartbeat_at, "
                "session_url, max_sessions, session_token) "
                f"VALUES (%s, %s, {DB_NOW}, {DB_NOW}, %s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET model_info = EXCLUDED.model_info, "
                "started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at, "
                "running_job = NULL, session_url = EXCLUDED.session_url, "
                "max_sessions = EXCLUDED.max_sessions, session_token = EXCLUDED.session_token",
                (name, info_to_json(info), session_url, max_sessions, session_token),
            )
            conn.execute("DELETE FROM helios_sessions WHERE worker = %s", (name,))

    def heartbeat(self, name: str, running_job: str | None) -> None:
        with transaction(self._pool) as conn:
            conn.execute(
                f"UPDATE helios_workers SET heartbeat_at = {DB_NOW}, running_job = %s "
                "WHERE name = %s",
                (running_job, name),
            )

    def sign_off(self, name: str) -> None:
        """A clean stop: no longer alive (the row stays: it still describes the model)."""
        with transaction(self._pool) as conn:
            conn.execute(
                "UPDATE helios_workers SET heartbeat_at = 0, running_job = NULL WHERE name = %s",
                (name,),
            )

    def alive(self, timeout_s: float) -> int:
        """Workers heard from within `timeout_s`."""
        with transaction(self._pool) as conn:
            row = conn.execute(
                f"SELECT count(*) AS n FROM helios_workers WHERE heartbeat_at >= {DB_NOW} - %s",
                (timeout_s,),
            ).fetchone()
        return 0 if row is None else int(row["n"])

    def model_info(self) -> ModelInfo | None:
        """The model the most recently started worker serves (None before any worker)."""
        with transaction(self._pool) as conn:
            row = conn.execute(
                "SELECT model_info FROM helios_workers ORDER BY started_at DESC LIMIT 1"
            ).fetchone()
        return None if row is None else info_from_json(str(row["model_info"]))

    # -- real-time sessions ------------------------------------------------------------------

    def session_hosts(self, timeout_s: float) -> list[SessionHost]:
        """Alive workers that take sessions, those with the most free slots first (as far as
        this registry knows: the worker itself has the last word, a 503)."""
        with transaction(self._pool) as conn:
            rows = conn.execute(
                "SELECT w.name, w.session_url, w.session_token, "
                "w.max_sessions - count(s.session_id) AS free "
                "FROM helios_workers w LEFT JOIN helios_sessions s ON s.worker = w.name "
                "WHERE w.session_url IS NOT NULL AND w.max_sessions > 0 "
                f"AND w.heartbeat_at >= {DB_NOW} - %s "
                "GROUP BY w.name, w.session_url, w.session_token, w.max_sessions "
                "ORDER BY free DESC, random()",
                (timeout_s,),
            ).fetchall()
        return [
            SessionHost(str(r["name"]), str(r["session_url"]), True, r["session_token"] or "")
            for r in rows
        ]

    def place(self, session_id: str, worker: str) -> None:
        with transaction(self._pool) as conn:
            conn.execute(
                "INSERT INTO helios_sessions (session_id, worker, created_at) "
                f"VALUES (%s, %s, {DB_NOW}) "
                "ON CONFLICT (session_id) DO UPDATE SET worker = EXCLUDED.worker",
                (session_id, worker),
            )

    def host_of(self, session_id: str, timeout_s: float) -> SessionHost | None:
        """Where `session_id` runs, and whether that worker is still heard from."""
        with transaction(self._pool) as conn:
            row = conn.execute(
                "SELECT w.name, w.session_url, w.session_token, "
                f"w.heartbeat_at >= {DB_NOW} - %s AS alive FROM helios_sessions s "
                "JOIN helios_workers w ON w.name = s.worker WHERE s.session_id = %s",
                (timeout_s, session_id),
            ).fetchone()
        if row is None:
            return None
        token = row["session_token"] or ""
        return SessionHost(str(row["name"]), str(row["session_url"]), bool(row["alive"]), token)

    def sessions(self) -> list[str]:
        with transaction(self._pool) as conn:
            rows = conn.execute("SELECT session_id FROM helios_sessions ORDER BY created_at")
            return [str(r["session_id"]) for r in rows]

    def forget(self, session_id: str) -> None:
        with transaction(self._pool) as conn:
            conn.execute("DELETE FROM helios_sessions WHERE session_id = %s", (session_id,))
