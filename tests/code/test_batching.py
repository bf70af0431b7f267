"""The micro-batcher merges concurrent requests and hands each its own rows."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from services.batching import MicroBatcher


def test_concurrent_requests_share_a_batch_and_get_their_rows() -> None:
    calls: list[int] = []
    gate = threading.Event()

    def model(x: np.ndarray) -> np.ndarray:
        gate.wait(5)
        calls.append(len(x))
        return x * 10

    async def main() -> list[np.ndarray]:
        batcher = MicroBatcher(model, max_batch_size=8)
        first = asyncio.create_task(batcher.submit(np.array([0])))
        await asyncio.sleep(0.05)  # the first batch is now running, blocked on the gate
        rest = [asyncio.create_task(batcher.submit(np.array([i, i + 100]))) for i in range(1, 6)]
        await asyncio.sleep(0.05)
        gate.set()
        return [await first, *[await r for r in rest]]

    results = asyncio.run(main())
    assert calls == [1, 10]  # one lone request, then five requests (ten rows) together
    assert results[0].tolist() == [0]
    for i, out in enumerate(results[1:], start=1):
        assert out.tolist() == [i * 10, (i + 100) * 10]


def test_batches_are_capped() -> None:
    sizes: list[int] = []

    def model(x: np.ndarray) -> np.ndarray:
        sizes.append(len(x))
        return x

    async def main() -> None:
        batcher = MicroBatcher(model, max_batch_size=3)
        await asyncio.gather(*(batcher.submit(np.array([i])) for i in range(7)))

    asyncio.run(main())
    assert max(sizes) <= 3 and sum(sizes) == 7


def test_a_failing_batch_fails_its_requests_and_the_next_batch_runs() -> None:
    def model(x: np.ndarray) -> np.ndarray:
        if (x < 0).any():
            raise RuntimeError("boom")
        return x

    async def main() -> None:
        batcher = MicroBatcher(model, max_batch_size=1)
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(np.array([-1]))
        assert (await batcher.submit(np.array([5]))).tolist() == [5]

    asyncio.run(main())


def test_requests_of_other_shapes_run_in_their_own_batches() -> None:
    shapes: list[tuple[int, ...]] = []

    def model(x: np.ndarray) -> np.ndarray:
        shapes.append(x.shape)
        return x.sum(axis=1)

    async def main() -> list[np.ndarray]:
        batcher = MicroBatcher(model, max_batch_size=8)
        sizes = [3, 5, 3, 5, 3]
        return await asyncio.gather(*(batcher.submit(np.full((1, n), i, dtype=np.float32)) for i, n in enumerate(sizes)))

    results = asyncio.run(main())
    assert [r.tolist() for r in results] == [[0.0], [5.0], [6.0], [15.0], [12.0]]
    assert sorted(shapes) == [(2, 5), (3, 3)]


class _Model:
    """Stands in for an ``OnnxModel``: records the thread each call ran on."""

    def __init__(self, seconds: float) -> None:
        self.spec = {"preprocess": {}}
        self.version = "1"
        self.rows_alone = False
        self.seconds, self.threads = seconds, []

    def seconds_per_call(self) -> float:
        return self.seconds

    def run(self, x: np.ndarray) -> np.ndarray:
        self.threads.append(threading.get_ident())
        return x * 2


@pytest.mark.parametrize(("seconds", "rows", "inline"), [(1e-5, 3, True), (1e-5, 1000, False), (5e-3, 3, False)])
def test_a_tiny_model_runs_small_requests_inline_and_the_rest_through_the_batcher(seconds: float, rows: int, inline: bool) -> None:
    from models.serving import Endpoint, Serving
    from models.settings import ServingSettings
    from services.runtime import TaskRunner

    class Hooks(Serving):
        task = "test"

        def endpoints(self) -> dict[str, Endpoint]:
            return {}

        def examples(self, folder):  # noqa: ANN001, ANN201
            return {}

    model = _Model(seconds)
    runner = TaskRunner("test", model, Hooks, ServingSettings())  # type: ignore[arg-type]

    async def main() -> tuple[np.ndarray, int]:
        return await runner.run(np.arange(rows)), threading.get_ident()

    out, loop_thread = asyncio.run(main())
    assert out.tolist() == (np.arange(rows) * 2).tolist()
    assert runner.inline is (seconds < 0.25e-3)
    assert (model.threads == [loop_thread]) is inline


def test_a_full_queue_is_refused_at_once_and_a_late_request_past_its_budget() -> None:
    from services.batching import Overloaded

    gate = threading.Event()

    def model(x: np.ndarray) -> np.ndarray:
        gate.wait(5)
        return x

    async def main() -> tuple[list[object], float]:
        batcher = MicroBatcher(model, max_batch_size=1, max_queue=2, max_wait_s=0.2)
        running = asyncio.create_task(batcher.submit(np.array([0])))
        await asyncio.sleep(0.05)  # the first call runs, blocked on the gate
        queued = [asyncio.create_task(batcher.submit(np.array([i]))) for i in (1, 2)]
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded) as full:
            await batcher.submit(np.array([3]))
        await asyncio.sleep(0.3)  # the queued ones are now past their budget
        gate.set()
        results = await asyncio.gather(running, *queued, return_exceptions=True)
        return results, full.value.retry_after

    results, retry_after = asyncio.run(main())
    assert results[0].tolist() == [0]
    assert all(isinstance(r, Overloaded) and r.reason == "wait_budget" for r in results[1:])
    assert retry_after >= 1


def test_requests_whose_callers_left_are_not_computed() -> None:
    """A request cancelled while it waits (its client hung up) is dropped from the queue, not run."""
    calls: list[list[int]] = []
    gate = threading.Event()

    def model(x: np.ndarray) -> np.ndarray:
        gate.wait(5)
        calls.append(x.tolist())
        return x

    async def main() -> np.ndarray:
        batcher = MicroBatcher(model, max_batch_size=8)
        first = asyncio.create_task(batcher.submit(np.array([0])))
        await asyncio.sleep(0.05)  # running, blocked on the gate
        gone = [asyncio.create_task(batcher.submit(np.array([i]))) for i in (1, 2)]
        kept = asyncio.create_task(batcher.submit(np.array([3])))
        await asyncio.sleep(0.02)
        for job in gone:
            job.cancel()
        await asyncio.sleep(0.02)
        gate.set()
        await first
        return await kept

    assert asyncio.run(main()).tolist() == [3]
    assert calls == [[0], [3]]


def test_a_client_gone_after_its_body_stops_the_work_and_one_gone_after_its_answer_does_not() -> None:
    from services.hangup import Hangups

    async def one(answer_first: bool) -> tuple[Hangups, list[str]]:
        inbox: asyncio.Queue[dict] = asyncio.Queue()
        inbox.put_nowait({"type": "http.request", "body": b"{}", "more_body": False})
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        link = Hangups(inbox.get, send)
        events: list[str] = []

        async def app() -> None:
            await link.receive()
            if answer_first:
                await link.send({"type": "http.response.start", "status": 200, "headers": []})
                await link.send({"type": "http.response.body", "body": b"ok"})
            inbox.put_nowait({"type": "http.disconnect"})
            try:
                await asyncio.sleep(0.5)
                events.append("finished")
            except asyncio.CancelledError:
                events.append("cancelled")
                raise

        await asyncio.wait_for(link.run(app()), 5)
        return link, events, [m.get("status") for m in sent if m["type"] == "http.response.start"]

    gone, events, statuses = asyncio.run(one(answer_first=False))
    # the request ends with 499 into the closed connection: the layers around (BentoML's timeout) see it end
    assert gone.hung_up and events == ["cancelled"] and statuses == [499]
    answered, events, statuses = asyncio.run(one(answer_first=True))
    assert not answered.hung_up and answered.answered and events == ["finished"] and statuses == [200]


def test_an_app_that_sees_the_client_gone_before_the_body_and_answers_nothing_still_ends_the_request() -> None:
    """BentoML's timeout middleware waits for an answer (or its timeout, a minute or more): without the 499, each
    client that hung up mid-upload on a direct JSON route left a request task alive that long (make chaos)."""
    from services.hangup import Hangups

    async def one(answer: bool) -> list[dict]:
        inbox: asyncio.Queue[dict] = asyncio.Queue()
        inbox.put_nowait({"type": "http.request", "body": b'{"te', "more_body": True})
        inbox.put_nowait({"type": "http.disconnect"})
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        link = Hangups(inbox.get, send)

        async def app() -> None:  # services.direct: reads the body, returns when the client is gone
            while (await link.receive())["type"] != "http.disconnect":
                pass
            if answer:
                await link.send({"type": "http.response.start", "status": 400, "headers": []})
                await link.send({"type": "http.response.body", "body": b"{}"})

        await asyncio.wait_for(link.run(app()), 5)
        assert not link.hung_up  # nothing was computed for it: not counted as abandoned work
        return sent

    silent = asyncio.run(one(answer=False))
    assert [m.get("status") for m in silent if m["type"] == "http.response.start"] == [499] and silent[-1] == {"type": "http.response.body", "body": b""}
    answered = asyncio.run(one(answer=True))
    assert [m.get("status") for m in answered if m["type"] == "http.response.start"] == [400] and len(answered) == 2  # no 499 after an answer
