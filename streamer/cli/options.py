"""Flags shared by several commands, and settings from them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from streamer.settings import Settings


def add_common(sp: argparse.ArgumentParser, *, kafka: bool = True, web: bool = True) -> None:
    sp.add_argument("--config", help="detector/policy TOML file (FW_CONFIG_FILE)")
    if kafka:
        sp.add_argument("--partitions", type=int, help="partitions of new topics (default 4)")
    if web:
        sp.add_argument("--app-id", help="Faust app id = consumer group (default frictionwatch)")
        sp.add_argument("--loglevel", help="worker log level (default warning)")
        sp.add_argument("--web-port", type=int, help="HTTP port (default 6066)")
        sp.add_argument("--web-host", help="HTTP bind address (default 127.0.0.1)")


def settings(args: argparse.Namespace, **extra: Any) -> Settings:
    """Defaults, then ``FW_*``, then the flags that were given."""
    return Settings.load(
        broker=getattr(args, "broker", None),
        web_port=getattr(args, "web_port", None),
        web_host=getattr(args, "web_host", None),
        partitions=getattr(args, "partitions", None),
        app_id=getattr(args, "app_id", None),
        config_file=getattr(args, "config", None),
        loglevel=getattr(args, "loglevel", None),
        **extra,
    )


def fail(message: str) -> int:
    """A usage error the user can fix: one line on stderr, exit status 2."""
    print(f"frictionwatch: error: {message}", file=sys.stderr)
    return 2


def write_plot(path: str, page: str) -> bool:
    """Write an HTML plot; a path that cannot be written is one line on stderr."""
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(page)
    except OSError as exc:
        fail(f"--plot {path!r}: {exc.strerror or exc}")
        return False
    print(f"wrote the plot to {path}", file=sys.stderr)
    return True
