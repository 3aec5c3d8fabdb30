"""One root exception for the package, one leaf per kind of refusal."""

from __future__ import annotations

from typing import Any


class DetectorError(Exception):
    """Root of the errors this package raises on purpose."""


class ConfigError(DetectorError, ValueError):
    """A setting outside its allowed range; the message names the key and the value."""


class InvalidEvent(DetectorError, ValueError):
    """An input that is not a v1 event; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str, index: int | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.index = index

    def as_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "detail": self.detail, "index": self.index}
