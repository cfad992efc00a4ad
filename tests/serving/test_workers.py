"""Unit tests of cartola.serving.workers: when a worker's answer closes its connection (the
e2e tests in test_guards.py run real workers)."""
from __future__ import annotations

import asyncio

from cartola.serving.workers import _Worker


async def _answer(scope, receive, send):  # pylint: disable=unused-argument
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def _closes(worker: _Worker, answers: int):
    """Which of ``answers`` consecutive answers carried ``Connection: close``."""
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def run():
        for _ in range(answers):
            await worker({"type": "http"}, receive, send)

    asyncio.run(run())
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == answers and all(m["status"] == 200 for m in starts)
    return [i + 1 for i, m in enumerate(starts) if (b"connection", b"close") in m["headers"]]


def test_every_nth_answer_closes_its_connection_so_clients_spread_over_workers():
    assert _closes(_Worker(_answer, lambda: None, rebalance_every=3), 10) == [3, 6, 9]


def test_one_worker_keeps_connections_open_until_it_drains():
    worker = _Worker(_answer, lambda: None)
    assert not _closes(worker, 250)
    worker.closing = True  # set by the drain on SIGTERM
    assert _closes(worker, 3) == [1, 2, 3]
