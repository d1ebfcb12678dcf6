"""`python -m bridge.entrypoints.consumer`: the write-off consumer as a process of its own
(bridge.services.consumer), with settings from ELBRIDGE_* variables. Waits for the ledger when
it is away at start; SIGTERM and Ctrl-C stop it after the batch in hand."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from bridge.core.errors import ConfigError
from bridge.services import consumer
from bridge.services.config import load_settings, mqtt_options


def main(argv: Sequence[str] | None = None) -> int:
    """Consume until idle, a time limit or a message count (when given), or a signal."""
    parser = argparse.ArgumentParser(
        prog="python -m bridge.entrypoints.consumer", description=consumer.__doc__
    )
    parser.add_argument("--idle-seconds", type=float, default=None)
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--max-messages", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        settings = load_settings()
        mqtt_options(settings)  # settings that do not go together: said before the ledger waits
    except ConfigError as error:
        print(f"consumer: {error}", file=sys.stderr, flush=True)
        return 2
    engine = consumer.engine_when_available(settings.ledger_url)
    try:
        report = consumer.consume(
            settings,
            engine,
            idle_seconds=args.idle_seconds,
            max_seconds=args.max_seconds,
            max_messages=args.max_messages,
        )
    except ConfigError as error:  # TLS or the login refused by the broker: no use retrying
        print(f"consumer: {error}", file=sys.stderr, flush=True)
        return 2
    except ConnectionError as error:
        print(f"consumer: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        engine.dispose()
    print(f"consume: {report}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
