"""The job queue of cluster mode: procrastinate on the same PostgreSQL as the job records.

procrastinate brings what a queue must get right and we do not write ourselves: `SKIP LOCKED`
claims, worker heartbeats, the list of jobs whose worker went silent (`get_stalled_jobs`) and
their retry, queueing locks. A queue task carries only a video id; the job record
(`PostgresJobStore`) stays the one truth of a job's state, attempt and checkpoint, so a task
delivered twice or late does no harm (`JobRecords.take` decides).
"""

from __future__ import annotations

import logging

import procrastinate
from procrastinate.exceptions import AlreadyEnqueued
from psycopg_pool import ConnectionPool

from helios_serve.jobs.models import JobStatus
from helios_serve.jobs.postgres.pool import Conn, transaction

logger = logging.getLogger(__name__)

VIDEO_TASK = "helios.run_video"
VIDEOS_QUEUE = "helios_videos"


def build_queue_app(dsn: str) -> procrastinate.App:
    """A procrastinate app on `dsn` (its pool checks each connection before use, so it
    recovers by itself after a database restart)."""
    connector = procrastinate.PsycopgConnector(
        conninfo=dsn,
        min_size=1,
        max_size=4,
        timeout=5,
        kwargs={"connect_timeout": 5},
    )
    return procrastinate.App(connector=connector)


async def defer_video(app: procrastinate.App, video_id: str) -> bool:
    """Put `video_id` on the queue unless it waits there already; False when the database
    could not be reached (the maintenance loop defers it later)."""
    task = app.configure_task(VIDEO_TASK, queue=VIDEOS_QUEUE, queueing_lock=video_id)
    try:
        await task.defer_async(video_id=video_id)
    except AlreadyEnqueued:
        return True
    except Exception as exc:  # an outage: the job is stored; the maintenance loop catches up
        logger.warning("could not queue %s now (%s); it will be queued later", video_id, exc)
        return False
    return True


def undispatched_jobs(pool: ConnectionPool[Conn], limit: int = 100) -> list[str]:
    """Queued job records without a waiting or running queue task (a gateway stopped between
    storing a job and queueing it, or a lost worker's job put back by `recover_stale`)."""
    with transaction(pool) as conn:
        rows = conn.execute(
            "SELECT j.id FROM helios_jobs j WHERE j.status = %s AND NOT EXISTS ("
            " SELECT 1 FROM procrastinate_jobs p WHERE p.queueing_lock = j.id"
            " AND p.status IN ('todo', 'doing')) ORDER BY j.seq LIMIT %s",
            (JobStatus.QUEUED.value, limit),
        ).fetchall()
    return [str(row["id"]) for row in rows]


class QueueDispatch:
    """`JobDispatch` of a gateway: admitted jobs go on the queue; workers do the rest."""

    def __init__(self, app: procrastinate.App) -> None:
        self._app = app
        self.trouble: str | None = None  # a store outage is answered per request (503)

    def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def submitted(self, job_id: str) -> None:
        await defer_video(self._app, job_id)

    def cancel(self, job_id: str) -> bool:  # noqa: ARG002 (the protocol's shape)
        """Never here: the worker running it sees the deleted record at its next heartbeat."""
        return False
