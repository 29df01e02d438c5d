"""`WorkerRegistry`: which workers are alive, what each runs, and the model they serve.

Workers write their row at start and refresh it every heartbeat; gateways read it for `/ready`,
`/metrics`, to learn the served model's description without loading it, and to place real-time
sessions (a worker that serves them registers its session URL and how many it takes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from psycopg_pool import ConnectionPool

from helios_serve.core.spec import ModelInfo
from helios_serve.core.types import Variant
from helios_serve.jobs.postgres.pool import Conn, transaction


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


class WorkerRegistry:
    def __init__(self, pool: ConnectionPool[Conn], clock: Callable[[], float] = time.time):
        self._pool = pool
        self._clock = clock

    def register(
        self, name: str, info: ModelInfo, session_url: str | None = None, max_sessions: int = 0
    ) -> None:
        now = self._clock()
        with transaction(self._pool) as conn:
            conn.execute(
                "INSERT INTO helios_workers (name, model_info, started_at, heartbeat_at, "
                "session_url, max_sessions) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET model_info = EXCLUDED.model_info, "
                "started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at, "
                "running_job = NULL, session_url = EXCLUDED.session_url, "
                "max_sessions = EXCLUDED.max_sessions",
                (name, info_to_json(info), now, now, session_url, max_sessions),
            )
            conn.execute("DELETE FROM helios_sessions WHERE worker = %s", (name,))

    def heartbeat(self, name: str, running_job: str | None) -> None:
        with transaction(self._pool) as conn:
            conn.execute(
                "UPDATE helios_workers SET heartbeat_at = %s, running_job = %s WHERE name = %s",
                (self._clock(), running_job, name),
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
                "SELECT count(*) AS n FROM helios_workers WHERE heartbeat_at >= %s",
                (self._clock() - timeout_s,),
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
                "SELECT w.name, w.session_url, w.max_sessions - count(s.session_id) AS free "
                "FROM helios_workers w LEFT JOIN helios_sessions s ON s.worker = w.name "
                "WHERE w.session_url IS NOT NULL AND w.max_sessions > 0 AND w.heartbeat_at >= %s "
                "GROUP BY w.name, w.session_url, w.max_sessions ORDER BY free DESC, random()",
                (self._clock() - timeout_s,),
            ).fetchall()
        return [SessionHost(str(r["name"]), str(r["session_url"])) for r in rows]

    def place(self, session_id: str, worker: str) -> None:
        with transaction(self._pool) as conn:
            conn.execute(
                "INSERT INTO helios_sessions (session_id, worker, created_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (session_id) DO UPDATE SET worker = EXCLUDED.worker",
                (session_id, worker, self._clock()),
            )

    def host_of(self, session_id: str, timeout_s: float) -> SessionHost | None:
        """Where `session_id` runs, and whether that worker is still heard from."""
        with transaction(self._pool) as conn:
            row = conn.execute(
                "SELECT w.name, w.session_url, w.heartbeat_at FROM helios_sessions s "
                "JOIN helios_workers w ON w.name = s.worker WHERE s.session_id = %s",
                (session_id,),
            ).fetchone()
        if row is None:
            return None
        alive = float(row["heartbeat_at"]) >= self._clock() - timeout_s
        return SessionHost(str(row["name"]), str(row["session_url"]), alive)

    def sessions(self) -> list[str]:
        with transaction(self._pool) as conn:
            rows = conn.execute("SELECT session_id FROM helios_sessions ORDER BY created_at")
            return [str(r["session_id"]) for r in rows]

    def forget(self, session_id: str) -> None:
        with transaction(self._pool) as conn:
            conn.execute("DELETE FROM helios_sessions WHERE session_id = %s", (session_id,))
