"""Friction detection as pure functions of events: no I/O, no clock, no framework.

Everything here takes time from the events it is given, so a replay of a file and the
live stream reach the same decisions. ``streamer`` imports this package, never the
other way round.
"""

from detectors.base import Detector, Signal
from detectors.errors import ConfigError, DetectorError, InvalidEvent
from detectors.events import Event, decode_record, validate_event

__all__ = [
    "ConfigError",
    "Detector",
    "DetectorError",
    "Event",
    "InvalidEvent",
    "Signal",
    "decode_record",
    "validate_event",
]
