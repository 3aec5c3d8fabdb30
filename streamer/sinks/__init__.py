"""Sinks: interventions and incidents carried out of Kafka into the tools people use.

- :mod:`~streamer.sinks.webhook`: each handoff (and, when asked, each incident open and
  close) POSTed as signed JSON to configured URLs, a helpdesk's or a chat tool's, with
  retries and the dead letters after the last one.

A sink is an independent consumer in the worker, with its own consumer group: a slow
receiver slows the sink, never the pipeline agent.
"""
