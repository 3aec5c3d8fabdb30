"""Every detector by name, and how a config section builds them.

Each ``[<detector>]`` section is read by :func:`detectors.config.build` (the one place
that refuses unknown keys); ``enabled = false`` leaves the detector out.

>>> [d.name for d in build({"dead_click": {"enabled": False}})]  # doctest: +NORMALIZE_WHITESPACE
['rage_click', 'error_click', 'form_struggle', 'navigation_loop', 'search_struggle',
 'http_error_burst', 'excessive_scroll', 'checkout_failure', 'help_request']
>>> build({"rage_click": {"ignore_selectors": [".carousel"]}})[0].ignore_selectors
('.carousel',)
>>> build({"rage_click": {"min_clics": 4}})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
detectors.errors.ConfigError: unknown key rage_click.min_clics (known: enabled, ..., min_clicks)
>>> build({"rage_clicks": {}})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
detectors.errors.ConfigError: unknown detector 'rage_clicks' (known: rage_click, dead_click, ...)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detectors.base import Detector
from detectors.checkout_failure import CheckoutFailure
from detectors.config import build as build_section
from detectors.dead_click import DeadClick
from detectors.error_click import ErrorClick
from detectors.errors import ConfigError
from detectors.excessive_scroll import ExcessiveScroll
from detectors.form_struggle import FormStruggle
from detectors.help_request import HelpRequest
from detectors.http_error_burst import HttpErrorBurst
from detectors.navigation_loop import NavigationLoop
from detectors.rage_click import RageClick
from detectors.search_struggle import SearchStruggle

REGISTRY: dict[str, type[Any]] = {
    cls.name: cls
    for cls in (
        RageClick,
        DeadClick,
        ErrorClick,
        FormStruggle,
        NavigationLoop,
        SearchStruggle,
        HttpErrorBurst,
        ExcessiveScroll,
        CheckoutFailure,
        HelpRequest,
    )
}


def build(config: Mapping[str, Mapping[str, Any]] | None = None) -> list[Detector]:
    """Instantiate every enabled detector, in registry order, from its config section."""
    config = config or {}
    for name in config:
        if name not in REGISTRY:
            raise ConfigError(f"unknown detector {name!r} (known: {', '.join(REGISTRY)})")
    built = [build_section(cls, config.get(name)) for name, cls in REGISTRY.items()]
    return [detector for detector in built if detector.enabled]
