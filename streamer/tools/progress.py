"""Progress bars for long offline runs (``simulate``, ``replay``, ``compare``, ``tune``).

A bar is drawn with tqdm on ``err`` only when ``err`` is a terminal: piped, redirected
or captured (as in tests and CI) nothing at all is written, so logs stay clean. The
bars never touch stdout, whose lines are what scripts and tests read.

>>> import io
>>> err = io.StringIO()  # not a terminal
>>> list(progress(iter([b"a", b"b"]), err, "replay"))
[b'a', b'b']
>>> err.getvalue()
''
>>> list(progress([1, 2], None, "nothing to draw on"))
[1, 2]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def is_terminal(err: IO[str] | None) -> bool:
    """Whether ``err`` is an interactive terminal a bar can be drawn on."""
    if err is None:
        return False
    try:
        return err.isatty()
    except (AttributeError, ValueError):  # a closed or minimal stream
        return False


def progress(
    items: Iterable[T],
    err: IO[str] | None,
    what: str,
    *,
    total: int | None = None,
    unit: str = "lines",
    leave: bool = False,
) -> Iterator[T]:
    """Yield ``items`` unchanged, drawing a bar named ``what`` on ``err`` if a terminal.

    ``total`` (when known) gives a percentage and an ETA; without it the bar shows the
    count and the rate. A finished bar is cleared unless ``leave``.
    """
    if err is None or not is_terminal(err):
        yield from items
        return
    # A terminal that reports no size (0 x 0, as some pseudo-terminals do) would get
    # no bar at all from tqdm: assume 80 x 24 there.
    sized = _sized(err)
    with tqdm(items, desc=what, total=total, unit=f" {unit}", file=err, leave=leave,
              dynamic_ncols=sized, ncols=None if sized else 80, nrows=None if sized else 24,
              unit_scale=total is None) as bar:
        yield from bar


def _sized(err: IO[str]) -> bool:
    try:
        size = os.get_terminal_size(err.fileno())
    except (AttributeError, ValueError, OSError):
        return False
    return size.columns > 0 and size.lines > 0
