"""The running system around :mod:`detectors`, by purpose:

- :mod:`streamer.stream`: the worker (Faust app, agents, pipeline: the hot path);
- :mod:`streamer.web`: the browser edge (collect, sessions, SSE, SDK, demo);
- :mod:`streamer.tools`: offline tools (simulate, replay, evaluate);
- :mod:`streamer.cli`: the ``frictionwatch`` command, one module per subcommand;
- :mod:`streamer.settings`, :mod:`streamer.metrics`, :mod:`streamer.embedded`: what
  all of them share.
"""
