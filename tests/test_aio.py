import asyncio
import logging
import threading

from harmony_lab._aio import close_loop


def test_close_loop_cancels_pending_tasks_and_logs_failures(caplog):
    loop = asyncio.new_event_loop()
    cancelled = threading.Event()

    async def waits_forever():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def fails_on_cancel():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("cleanup went wrong") from None

    t1 = loop.create_task(waits_forever())
    t2 = loop.create_task(fails_on_cancel())
    loop.run_until_complete(asyncio.sleep(0))
    with caplog.at_level(logging.ERROR, logger="harmony_lab._aio"):
        close_loop(loop)
    assert loop.is_closed()
    assert cancelled.is_set()
    assert t1.cancelled()
    assert t2.done()
    assert isinstance(t2.exception(), RuntimeError)
    assert "cleanup went wrong" in caplog.text
