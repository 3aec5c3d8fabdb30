"""The reference config ``deploy/frictionwatch.toml``, generated from the declarations.

Every section and key at its default, with its allowed range and doc as a comment,
comes from the :func:`detectors.config.setting` fields of the classes in
:data:`SECTIONS`; nothing in the file is written by hand but :data:`HEADER`.
``make config-reference`` (``python -m detectors.reference``) rewrites it, ``--check``
only says whether it is stale; ``tests/test_config_reference.py`` fails when it is.

>>> text = render()
>>> text.startswith(HEADER) and "\\n[rage_click]\\nenabled = true" in text
True
>>> "min_clicks = 3" in text and "# 2 to 100: clicks in a run that make it rage" in text
True
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from detectors.config import reference_toml
from detectors.incidents import IncidentDetector
from detectors.model import Models
from detectors.policy import Policy
from detectors.registry import REGISTRY
from detectors.routes import Routes

#: Every configurable class, in the order of its section in the file.
SECTIONS: Final[tuple[Any, ...]] = (*REGISTRY.values(), Policy, Models, Routes, IncidentDetector)

#: The committed reference file, beside the package in a source checkout.
PATH: Final = Path(__file__).resolve().parent.parent / "deploy" / "frictionwatch.toml"

HEADER: Final = """\
# frictionwatch detector and policy configuration: every key, at its default.
# Start a worker with `frictionwatch worker --config deploy/frictionwatch.toml`, edit,
# then `kill -HUP <pid>` to reload without losing session state. Unknown keys and
# out-of-range values are refused with a message naming them. Times are ms of event
# time (the events' ts), never the wall clock. A comment gives a key's allowed range,
# then what it does.
#
# Generated from the settings declared in detectors/ by `make config-reference`
# (python -m detectors.reference): change a declaration there and regenerate, do not
# edit this file. tests/test_config_reference.py fails when it is out of date.
"""


def render() -> str:
    """The reference file's text, from the declarations as they are now."""
    return reference_toml(SECTIONS, header=HEADER)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detectors.reference", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", type=Path, default=PATH,
                        help=f"where to write it (default {PATH})")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the file differs from the declarations")
    args = parser.parse_args(argv)
    text = render()
    current = args.path.read_text(encoding="utf-8") if args.path.exists() else None
    if args.check:
        if current != text:
            print(f"{args.path} is out of date: run `make config-reference`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        args.path.write_text(text, encoding="utf-8")
        print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
