"""``python -m streamer`` is the ``frictionwatch`` command (see :mod:`streamer.cli`)."""

import sys

from streamer.cli import main

if __name__ == "__main__":
    sys.exit(main())
