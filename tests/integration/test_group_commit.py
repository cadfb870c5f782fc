"""``GroupCommit``: the writes made while one is in flight go together as one store
``write``, each still its own compare-and-set, on every store; a store error reaches
every caller; the writes reach the store in object order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runstate import AsyncResponseEngine, StoreError, open_store_async
from runstate.stores import GroupCommit
from runstate.stores._group import ABANDONED

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def url(store_url: str) -> str:
    """Each backend's store URL (``store_url``, in ``conftest.py``)."""
    return store_url


class Recording:
    """An async store that records what each ``write`` carried, and can fail one."""

    def __init__(self, store: Any) -> None:
        self.store, self.calls, self.fail_next = store, [], False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def write(self, writes: Any) -> Any:
        self.calls.append([w.obj.id for w in writes])
        if self.fail_next:
            self.fail_next = False
            raise StoreError("the store is away")
        return await self.store.write(writes)


async def streaming(
    url: str, count: int
) -> tuple[AsyncResponseEngine, Recording, GroupCommit, list[str]]:
    recording = Recording(await open_store_async(url))
    group = GroupCommit(recording)
    engine = AsyncResponseEngine(group)
    ids = []
    for _ in range(count):
        ids.append((await engine.create(model="m", input="Hi", background=True)).id)
        await engine.claim("w")
        await engine.open_message(ids[-1], worker_id="w")
    return engine, recording, group, ids


def test_writes_made_together_go_as_one_transaction_each_its_own(url: str) -> None:
    async def main() -> None:
        engine, recording, group, ids = await streaming(url, 12)
        recording.calls.clear()
        before = group.batches
        for word in ("a", "b", "c"):
            await asyncio.gather(*(engine.add_text(i, word, worker_id="w") for i in ids))
        assert group.batches - before < 3 * len(ids)  # fewer transactions than writes
        assert max(len(call) for call in recording.calls) > 1
        assert all(call == sorted(call) for call in recording.calls)  # in object order
        for i in ids:
            events = await engine.history(i)
            deltas = [e.data["delta"] for e in events if e.event == "response.output_text.delta"]
            assert deltas == ["a", "b", "c"]
            assert [e.sequence_number for e in events] == list(range(len(events)))
        await engine.close()

    asyncio.run(main())


def test_two_writes_of_one_object_at_once_both_land(url: str) -> None:
    """Two operations on one object in one batch: one loses its compare-and-set there and
    its engine writes it again."""

    async def main() -> None:
        engine, _recording, _, (one,) = await streaming(url, 1)
        await asyncio.gather(*(engine.add_text(one, w, worker_id="w") for w in "xyz"))
        response = await engine.get(one)
        assert sorted(response.output[0]["content"][0]["text"]) == ["x", "y", "z"]
        await engine.close()

    asyncio.run(main())


def test_a_store_error_reaches_every_caller_and_the_next_writes_go_on(url: str) -> None:
    async def main() -> None:
        engine, recording, _, ids = await streaming(url, 4)
        await asyncio.sleep(0)
        recording.fail_next = True
        results = await asyncio.gather(
            *(engine.add_text(i, "a", worker_id="w") for i in ids), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, StoreError)]
        assert failed and all(r.message == "the store is away" for r in failed)
        assert len({id(r) for r in failed}) == len(failed)  # each caller's own
        await asyncio.gather(*(engine.add_text(i, "b", worker_id="w") for i in ids))
        for i in ids:
            assert (await engine.get(i)).output[0]["content"][0]["text"].endswith("b")
        await engine.close()

    asyncio.run(main())


def test_a_caller_that_gives_up_leaves_the_others_their_results(url: str) -> None:
    async def main() -> None:
        engine, recording, group, ids = await streaming(url, 6)
        assert repr(group) == f"GroupCommit({recording!r})"
        tasks = [asyncio.ensure_future(engine.add_text(i, "a", worker_id="w")) for i in ids]
        await asyncio.sleep(0)  # each has begun, and some wait for the write in flight
        tasks[0].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError)
        for i in ids[1:]:
            assert (await engine.get(i)).output[0]["content"][0]["text"] == "a"
        await engine.close()

    asyncio.run(main())


def test_a_flush_cancelled_mid_write_tells_every_caller() -> None:
    """The task that writes for everyone is cancelled (its loop shutting down): each
    caller hears of it as a store error, none waits forever, and the next write starts a
    new flush."""

    class Hanging(Recording):
        async def write(self, writes: Any) -> Any:
            self.calls.append([w.obj.id for w in writes])
            if len(self.calls) == 1:
                await asyncio.Event().wait()
            return await self.store.write(writes)

    async def main() -> None:
        recording = Hanging(await open_store_async("memory://"))
        group = GroupCommit(recording)
        engine = AsyncResponseEngine(group)
        ids = [(await engine.create(model="m", input="Hi", background=True)).id for _ in range(3)]
        tasks = [asyncio.ensure_future(engine.cancel(i)) for i in ids]
        while not recording.calls:
            await asyncio.sleep(0)
        flusher = group._writes._flusher
        assert flusher is not None
        flusher.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, StoreError) for r in results)
        assert {r.message for r in results} == {ABANDONED}
        assert (await engine.cancel(ids[0])).status.value == "cancelled"  # a new flush
        await engine.close()

    asyncio.run(main())
