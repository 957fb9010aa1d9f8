"""Command line: ``python -m otelkit_collector`` / ``otelkit-collector`` runs one collector
process."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import uvicorn

from otelkit_collector.app import MULTI_PROCESS_MESSAGE, create_app
from otelkit_collector.settings import CollectorSettings


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``--host``, ``--port`` and ``--workers`` (which must be 1)."""
    parser = argparse.ArgumentParser(
        prog="otelkit-collector",
        description="Accept JSON push reports and expose them to Prometheus at /metrics.",
    )
    parser.add_argument("--host", help="bind address (OTELKIT_COLLECTOR_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="bind port (OTELKIT_COLLECTOR_PORT, default 9090)")
    parser.add_argument(
        "--workers", type=int, default=1, help="must be 1: the collector is one process"
    )
    parser.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Start the collector; return a process exit code."""
    args = parse_args(argv)
    workers = args.workers
    web_concurrency = os.environ.get("WEB_CONCURRENCY", "").strip()
    if workers == 1 and web_concurrency.isdigit():
        workers = int(web_concurrency)
    if workers != 1:
        print(
            f"otelkit-collector: refusing --workers {workers}: {MULTI_PROCESS_MESSAGE}",
            file=sys.stderr,
        )
        return 2
    try:
        settings = CollectorSettings.from_env(host=args.host, port=args.port)
    except ValueError as exc:
        print(f"otelkit-collector: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
