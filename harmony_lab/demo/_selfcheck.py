"""``python -m harmony_lab.demo._selfcheck``: start the embedded stack with demo traffic, check that
rows and presence flow, stop. Binder's ``postBuild`` runs it so a broken image fails at build time."""

from __future__ import annotations

import asyncio
import logging
import sys
import time

logger = logging.getLogger(__name__)


async def _check(limit_s: float) -> dict[str, object]:
    from harmony_lab.demo._simulator import Simulator
    from harmony_lab.local import LocalRealtime

    async with LocalRealtime() as rt:
        sim = Simulator(rt, users=4, rate=20.0, seed=1)
        async with sim:
            await sim.wait_for(lambda s: s.actions >= 40, timeout=limit_s)
            await sim.wait_for(lambda s: s.stats["presence_calls"] >= 1, timeout=limit_s)
        if sim.stats["errors"]:
            raise RuntimeError(f"the simulator reported errors: {sim.stats['last_error']}")
        return sim.stats


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    stats = asyncio.run(_check(60.0))
    sys.stdout.write(
        f"harmony_lab self-check ok in {time.monotonic() - started:.1f} s: "
        f"{stats['actions']} actions, rows {stats['rows']}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
