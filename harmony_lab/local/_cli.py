"""``harmony-lab serve``: run the local stack (Postgres + schema + Realtime server) until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the embedded Supabase Realtime stack (Postgres + Harmony schema + server)",
        description="Start PostgreSQL, apply the Harmony schema, and serve the Realtime protocol until "
        "interrupted (Ctrl-C / SIGTERM). Prints the project URL, keys and DSN.",
    )
    p.add_argument("--port", type=int, default=None, help="server port (default: a free port)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--data-dir", default=None, help="keep Postgres data here (default: temporary)")
    p.add_argument(
        "--jwt-secret-env",
        default="HARMONY_LAB_JWT_SECRET",
        metavar="VAR",
        help="read the HS256 secret from this environment variable (default: HARMONY_LAB_JWT_SECRET; "
        "unset = random per run). Secrets never go on the command line, where any local user can read them",
    )
    p.add_argument("--no-seed", action="store_true", help="do not load the Harmony demo data")
    p.add_argument(
        "--private-only",
        action="store_true",
        help="refuse public channels (Supabase's 'Allow public access' turned off): every channel must "
        "join with config.private and pass Realtime Authorization",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=60.0,
        help="close sockets silent for this many seconds (0 = never)",
    )
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from harmony_lab._lifetime import async_stop_signals
    from harmony_lab.local.stack import LocalRealtime
    from harmony_lab.server import ServerLimits

    with async_stop_signals() as stop:
        limits = ServerLimits(idle_timeout_s=args.idle_timeout or None)
        jwt_secret = os.environ.get(args.jwt_secret_env) or None
        async with LocalRealtime(
            data_dir=args.data_dir,
            port=args.port,
            host=args.host,
            jwt_secret=jwt_secret,
            limits=limits,
            seed=not args.no_seed,
            private_only=args.private_only,
        ) as rt:
            out = sys.stdout
            out.write(
                "harmony-lab Realtime is running\n"
                f"  URL               {rt.url}\n"
                f"  websocket         {rt.ws_url}/websocket\n"
                f"  anon key          {rt.anon_key}\n"
                f"  service role key  {rt.service_role_key}\n"
                f"  JWT secret        {rt.jwt_secret}\n"
                f"  DSN               {rt.dsn}\n"
                f"  postgres_changes  {'on' if rt.hub is not None else 'off (no hub available)'}\n"
                f"  public channels   {'refused (private only)' if args.private_only else 'allowed'}\n"
                "environment:\n"
            )
            for k, v in rt.env().items():
                out.write(f"  export {k}='{v}'\n")
            out.write("Press Ctrl-C to stop.\n")
            out.flush()
            await stop.wait()
            logger.info("stopping")
    sys.stdout.write("stopped\n")
    return 0
