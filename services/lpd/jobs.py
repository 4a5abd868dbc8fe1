"""The spooler's jobs (runs in lpd): submitted in pieces, queued in order, printed, done.

A pure store, one owner of every job's bookkeeping: ``printed`` is the
number of bytes the printer confirmed (services/lpd/pump.py raises it, never
beyond ``size``, never down), ``received`` the bytes the submitter has sent.

    RECEIVING --last DATA--> QUEUED --head of the queue--> PRINTING --all printed--> done
    PRINTING --paper out / off line--> HELD --printer ready--> PRINTING
    any --CANCEL--> cancelled (done list)
"""
from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from minikern.const import LP_MAX_JOB, LP_MAX_JOBS, NAME_MAX, Err

DONE_KEPT = 16  # finished jobs STATUS lists


class JobState(Enum):
    RECEIVING = "receiving"
    QUEUED = "queued"
    PRINTING = "printing"
    HELD = "held"
    DONE = "done"
    CANCELLED = "cancelled"


@dataclass
class Job:
    job: int
    name: str
    size: int
    owner: int  # the submitter's endpoint: only it may send the job's DATA
    data: bytearray = field(default_factory=bytearray)
    printed: int = 0
    state: JobState = JobState.RECEIVING
    why: str = ""

    @property
    def received(self) -> int:
        return len(self.data)

    def row(self) -> dict[str, Any]:
        return {"job": self.job, "name": self.name, "size": self.size, "received": self.received,
                "printed": self.printed, "state": self.state.value, "why": self.why}


class Refused(Exception):
    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


class Jobs:
    def __init__(self) -> None:
        self.jobs: dict[int, Job] = {}  # in submission order (dicts keep it)
        self.done: deque[Job] = deque(maxlen=DONE_KEPT)
        self._ids = itertools.count(1)

    def submit(self, name: object, size: object, owner: int) -> Job:
        if type(name) is not str or not 0 < len(name) <= NAME_MAX:
            raise Refused(Err.EINVAL, f"name is not a string of 1 to {NAME_MAX} characters")
        if type(size) is not int or size < 0:
            raise Refused(Err.EINVAL, "size is not an int >= 0")
        if size > LP_MAX_JOB:
            raise Refused(Err.EFBIG, f"a job is at most {LP_MAX_JOB} bytes")
        if len(self.jobs) >= LP_MAX_JOBS:
            raise Refused(Err.ENOSPC, f"the spooler holds {LP_MAX_JOBS} jobs already")
        job = Job(next(self._ids), name, size, owner)
        self.jobs[job.job] = job
        if size == 0:
            self.finish(job, JobState.DONE)
        return job

    def append(self, job_id: object, offset: object, data: object, owner: int) -> Job:
        job = self.jobs.get(job_id) if type(job_id) is int else None
        if job is None or job.owner != owner or job.state != JobState.RECEIVING:
            raise Refused(Err.ESRCH, "no such job being submitted by this caller")
        if type(data) is not bytes or type(offset) is not int:
            raise Refused(Err.EINVAL, "offset is not an int or data is not bytes")
        if offset != job.received or offset + len(data) > job.size:
            raise Refused(Err.EINVAL, f"offset is not {job.received} or data passes size")
        job.data += data
        if job.received == job.size:
            job.state = JobState.QUEUED
        return job

    def cancel(self, job_id: object) -> Job:
        job = self.jobs.get(job_id) if type(job_id) is int else None
        if job is None:
            raise Refused(Err.ESRCH, "no such job")
        self.finish(job, JobState.CANCELLED)
        return job

    def finish(self, job: Job, state: JobState) -> None:
        job.state, job.why = state, ""
        job.data = bytearray()  # what is printed stays on paper; the bytes go
        self.jobs.pop(job.job, None)
        self.done.append(job)

    def next_to_print(self) -> Job | None:
        """The job the printer works on: the first that is printing, held or queued."""
        for job in self.jobs.values():
            if job.state in (JobState.PRINTING, JobState.HELD, JobState.QUEUED):
                return job
        return None

    def confirm(self, job: Job, count: int) -> None:
        """The printer confirmed ``count`` more bytes of ``job``."""
        job.printed = min(job.size, job.printed + max(0, count))
        if job.printed == job.size and job.state not in (JobState.DONE, JobState.CANCELLED):
            self.finish(job, JobState.DONE)

    def status(self) -> dict[str, Any]:
        return {"jobs": [j.row() for j in self.jobs.values()],
                "done": [j.row() for j in self.done]}
