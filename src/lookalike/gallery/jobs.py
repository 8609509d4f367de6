"""Background jobs for work too long for one request: a large group's duplicate sets.

A job runs in one worker thread of its own (one job at a time, so a burst of them cannot take
every core from searches); the request that starts it answers at once with the job's id, and the
caller polls its status and progress. Jobs live in memory: a restart forgets them (start again),
and only the last :data:`KEEP_FINISHED` finished ones are kept.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lookalike import errors

KEEP_FINISHED = 32
MAX_WAITING = 32


@dataclass
class Job:
    id: str
    owner: str
    """Who may see it: the store's key of its group (the tenant's namespace included)."""
    kind: str
    params: dict[str, Any]
    status: str = "queued"
    """queued, running, done or failed."""
    stage: str = ""
    done: int = 0
    total: int = 0
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    result: Any = None
    error: errors.LookalikeError | None = None

    def progress(self, stage: str, done: int, total: int) -> None:
        """Called by the work as it goes; the status endpoint reads these three fields."""
        self.stage, self.done, self.total = stage, done, total


class JobRunner:
    """Runs jobs one at a time in a background thread. Thread-safe."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobs")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, owner: str, kind: str, params: dict[str, Any], work: Callable[[Job], Any]) -> Job:
        """A queued job running ``work(job)``; the same unfinished job when one with these
        owner, kind and params is already waiting or running (a page reloaded twice)."""
        with self._lock:
            for job in self._jobs.values():
                if job.status in ("queued", "running") and (job.owner, job.kind, job.params) == (owner, kind, params):
                    return job
            waiting = sum(job.status == "queued" for job in self._jobs.values())
            if waiting >= MAX_WAITING:
                raise errors.ServerBusy(f"{waiting} jobs are waiting already; retry when one has finished")
            job = Job(secrets.token_hex(8), owner, kind, dict(params))
            self._jobs[job.id] = job
            self._forget_old()
        self._pool.submit(self._run, job, work)
        return job

    def _run(self, job: Job, work: Callable[[Job], Any]) -> None:
        job.started, job.status = time.time(), "running"
        try:
            job.result = work(job)
            job.status = "done"
        except errors.LookalikeError as exc:
            job.error, job.status = exc, "failed"
        except Exception as exc:  # noqa: BLE001 - a job's failure is reported, never lost in a thread
            job.error, job.status = errors.LookalikeError(f"the job failed: {exc}"), "failed"
        finally:
            job.finished = time.time()

    def get(self, owner: str, job_id: str) -> Job:
        """The job, when ``owner``'s; ResourceNotFound otherwise (another tenant's, or forgotten)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.owner != owner:
            raise errors.ResourceNotFound(
                f"job {job_id!r} does not exist (jobs are forgotten when the server restarts)"
            )
        return job

    def _forget_old(self) -> None:
        finished = sorted((j for j in self._jobs.values() if j.finished is not None), key=lambda j: j.finished or 0)
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job.id]

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
