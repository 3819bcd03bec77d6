"""Group commit for the gate: admissions that arrive while one of their key's transactions is in
flight wait for it, then go together in the next one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from agentbilling.domain.gate import AdmissionRequest, OpenResult

MAX_BATCH = 128  # admissions in one transaction at most; the rest go in the next

Outcome = OpenResult | Exception | None  # an error is its request's answer
RunBatch = Callable[[str, Sequence[AdmissionRequest]], Awaitable[Sequence[Outcome]]]


class GroupCommit:
    """One queue per API key, drained by one task at a time: while a batch of a key is in flight,
    its next requests gather for the following one.

    A transaction per admission is bounded by the database's commit: on PostgreSQL a tenant's counter
    row stays locked until its commit is flushed to disk, so one tenant's admissions, one transaction
    each, cannot outrun the disk. Gathered, they share one transaction, one flush and one hop to a
    worker thread. A lone request goes alone, as soon as it comes, so nothing waits for a batch to
    fill; a batch forms only from requests that would have queued anyway. Every request still gets
    the answer it would get alone, in the order it arrived (`Billing.open_sessions_for_key`), and is
    answered only once its transaction has committed."""

    def __init__(self, run: RunBatch, max_batch: int = MAX_BATCH) -> None:
        self._run = run
        self._max_batch = max_batch
        self._queues: dict[str, list[tuple[AdmissionRequest, asyncio.Future[Outcome]]]] = {}
        self._drains: set[asyncio.Task[None]] = set()  # held so they are not collected mid-flight
        self.batches = 0  # transactions run, and the admissions they carried: for tests and logs
        self.admissions = 0

    async def admit(self, key: str, request: AdmissionRequest) -> OpenResult | None:
        """The request's answer (None: no live key); its error is raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        queue = self._queues.get(key)
        if queue is None:
            self._queues[key] = [(request, future)]
            drain = loop.create_task(self._drain(key))
            self._drains.add(drain)
            drain.add_done_callback(self._drains.discard)
        else:
            queue.append((request, future))
        outcome = await future
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _drain(self, key: str) -> None:
        queue = self._queues[key]
        batch: list[tuple[AdmissionRequest, asyncio.Future[Outcome]]] = []
        try:
            while queue:
                # A future already done belongs to a request that went away: it was not run, so skip it.
                batch = [(r, f) for r, f in queue[: self._max_batch] if not f.done()]
                del queue[: self._max_batch]
                if not batch:
                    continue
                try:
                    outcomes = await self._run(key, [r for r, _ in batch])
                except Exception as exc:  # the batch failed as a whole: so does each of its requests
                    for _, f in batch:
                        if not f.done():
                            f.set_exception(exc)
                    continue
                self.batches += 1
                self.admissions += len(batch)
                for (_, f), outcome in zip(batch, outcomes, strict=True):
                    if not f.done():
                        f.set_result(outcome)
                batch = []
        finally:
            # Reached with the queue empty and no await since the check, so no request is left
            # behind; on cancellation (shutdown) whatever still waits is cancelled with it.
            del self._queues[key]
            for _, f in (*batch, *queue):
                if not f.done():
                    f.cancel()
