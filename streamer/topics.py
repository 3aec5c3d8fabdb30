"""Topic and table declarations: names are contracts (see README), keys are session ids."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from streamer.settings import (
    DEADLETTER_TOPIC,
    EVENTS_TOPIC,
    INTERVENTIONS_TOPIC,
    SIGNALS_TOPIC,
    Settings,
)

SESSIONS_TABLE = "session_to_state"


@dataclass(frozen=True)
class Topics:
    events: faust.TopicT
    interventions: faust.TopicT
    signals: faust.TopicT
    deadletter: faust.TopicT
    #: session id -> SessionState as orjson bytes; changelog-backed.
    session_to_state: faust.Table

    @staticmethod
    def names(settings: Settings) -> list[str]:
        """Every topic the app uses, the table changelog included, for pre-creation."""
        changelog = f"{settings.app_id}-{SESSIONS_TABLE}-changelog"
        return [EVENTS_TOPIC, INTERVENTIONS_TOPIC, SIGNALS_TOPIC, DEADLETTER_TOPIC, changelog]


def declare(app: faust.App, settings: Settings) -> Topics:
    # Raw bytes everywhere: we decode with orjson ourselves, once, at the edge.
    def topic(name: str) -> faust.TopicT:
        return app.topic(
            name, key_type=bytes, value_type=bytes, key_serializer="raw",
            value_serializer="raw", partitions=settings.partitions,
        )

    return Topics(
        events=topic(EVENTS_TOPIC),
        interventions=topic(INTERVENTIONS_TOPIC),
        signals=topic(SIGNALS_TOPIC),
        deadletter=topic(DEADLETTER_TOPIC),
        # bytes as key and value type make Faust use the raw codec for the changelog.
        session_to_state=app.Table(
            SESSIONS_TABLE, key_type=bytes, value_type=bytes, partitions=settings.partitions
        ),
    )
