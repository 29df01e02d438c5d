"""`WorkerRegistry`: which workers are alive, what each runs, and the model they serve.

Workers write their row at start and refresh it every heartbeat; gateways read it for `/ready`,
`/metrics` and to learn the served model's description without loading it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict

from psycopg_pool import ConnectionPool

from helios_serve.cluster.pg import Conn, transaction
from helios_serve.core.spec import ModelInfo
from helios_serve.core.types import Variant


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


class WorkerRegistry:
    def __init__(self, pool: ConnectionPool[Conn], clock: Callable[[], float] = time.time):
        self._pool = pool
        self._clock = clock

    def register(self, name: str, info: ModelInfo) -> None:
        now = self._clock()
        with transaction(self._pool) as conn:
            conn.execute(
                "INSERT INTO helios_workers (name, model_info, started_at, heartbeat_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
                "model_info = EXCLUDED.model_info, started_at = EXCLUDED.started_at, "
                "heartbeat_at = EXCLUDED.heartbeat_at, running_job = NULL",
                (name, info_to_json(info), now, now),
            )

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
