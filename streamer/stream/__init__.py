"""The worker: the Faust app, its topics and tables, the agents and the pipeline they
run, model checkpoints, config reload and consumer lag. The hot path lives here and
nowhere else.

One record's way through: :mod:`~streamer.stream.agents` takes a batch from
``frictionwatch.events`` (:mod:`~streamer.stream.batching`), hands it to
:mod:`~streamer.stream.pipeline` (decode, load each session's state once, step the
engine of :mod:`detectors.session`, save), and publishes what came out.
"""
