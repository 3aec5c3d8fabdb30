"""Topic and table declarations: names are contracts (see README), keys are session ids."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from streamer.settings import Settings

#: Topic names are contracts (README "Contracts"): never rename, only add.
EVENTS_TOPIC = "frictionwatch.events"
INTERVENTIONS_TOPIC = "frictionwatch.interventions"
SIGNALS_TOPIC = "frictionwatch.signals"
DEADLETTER_TOPIC = "frictionwatch.deadletter"
MODELS_TOPIC = "frictionwatch.models"
INCIDENTS_TOPIC = "frictionwatch.incidents"

SESSIONS_TABLE = "session_to_state"
INCIDENTS_TABLE = "incident_to_state"


def incident_signals_topic(settings: Settings) -> str:
    """The app's own topic of signals keyed by incident key (``route|failure``)."""
    return f"{settings.app_id}-signals_by_incident-repartition"


@dataclass(frozen=True)
class Topics:
    events: faust.TopicT
    interventions: faust.TopicT
    signals: faust.TopicT
    deadletter: faust.TopicT
    #: Pickled online models, key = app id; compacted: only the latest matters.
    models: faust.TopicT
    #: session id -> SessionState as orjson bytes; changelog-backed.
    session_to_state: faust.types.TableT[bytes, bytes]
    #: Incident opens and closes (streamer/incidents.py), key = "route|failure".
    incidents: faust.TopicT
    #: Signals repartitioned by incident key: each key's observations on one partition.
    signals_by_incident: faust.TopicT
    #: "route|failure" -> the key's incident detector state as orjson; changelog-backed.
    incident_to_state: faust.types.TableT[bytes, bytes]

    @staticmethod
    def names(settings: Settings) -> list[str]:
        """Every topic the app uses, the table changelog included, for pre-creation."""
        changelog = f"{settings.app_id}-{SESSIONS_TABLE}-changelog"
        return [EVENTS_TOPIC, INTERVENTIONS_TOPIC, SIGNALS_TOPIC, DEADLETTER_TOPIC, MODELS_TOPIC,
                changelog, INCIDENTS_TOPIC, incident_signals_topic(settings),
                f"{settings.app_id}-{INCIDENTS_TABLE}-changelog"]

    @staticmethod
    def compacted(settings: Settings) -> list[str]:
        return [MODELS_TOPIC, f"{settings.app_id}-{SESSIONS_TABLE}-changelog",
                f"{settings.app_id}-{INCIDENTS_TABLE}-changelog"]


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
        models=topic(MODELS_TOPIC),
        # bytes as key and value type make Faust use the raw codec for the changelog.
        # use_partitioner: changelog records are placed by key, like the events, so a
        # session's state lands in its own partition even when written from a batch.
        session_to_state=app.Table(
            SESSIONS_TABLE, key_type=bytes, value_type=bytes, partitions=settings.partitions,
            use_partitioner=True,
        ),
        incidents=topic(INCIDENTS_TOPIC),
        signals_by_incident=topic(incident_signals_topic(settings)),
        # Placed by key like the repartitioned signals, so a key's state sits in the
        # partition of its observations (and timers may write it).
        incident_to_state=app.Table(
            INCIDENTS_TABLE, key_type=bytes, value_type=bytes, partitions=settings.partitions,
            use_partitioner=True,
        ),
    )
