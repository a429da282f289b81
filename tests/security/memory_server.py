"""Run one RealtimeServer in its own process, so a test can read that process's memory.

``python -m tests.security.memory_server '{"max_broadcast_bytes": 2097152}'`` starts a server with
those ServerLimits overrides, prints ``PORT <n>`` on stdout and serves until stdin closes. The
server's log goes to stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from harmony_lab.server._limits import ServerLimits
from harmony_lab.server._server import RealtimeServer
from tests.server.rt_helpers import SECRET


async def main(overrides: dict[str, object]) -> None:
    loop = asyncio.get_running_loop()
    async with RealtimeServer(jwt_secret=SECRET, limits=ServerLimits().replace(**overrides)) as srv:
        sys.stdout.write(f"PORT {srv.port}\n")
        sys.stdout.flush()
        await loop.run_in_executor(None, sys.stdin.read)  # returns when the test closes our stdin


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    asyncio.run(main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))
