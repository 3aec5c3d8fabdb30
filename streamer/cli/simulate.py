"""``frictionwatch simulate``: labelled synthetic traffic, to files or to a broker."""

from __future__ import annotations

import argparse
import asyncio
import sys

from streamer.cli import options


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sm = sub.add_parser("simulate", help="labelled synthetic traffic (seeded, reproducible)")
    options.add_common(sm, web=False)
    sm.add_argument("--seed", type=int, default=1)
    sm.add_argument("--sessions", type=int, default=1000)
    sm.add_argument("--events-out", help="write events as JSONL here")
    sm.add_argument("--labels-out", help="write friction labels as JSONL here")
    sm.add_argument("--broker", help="also produce the traffic to this Kafka")
    sm.add_argument("--effects", choices=("uniform", "heterogeneous"), default="uniform",
                    help="true effects of interventions (streamer/tools/world.py): the same "
                    "--nudge-effect for everyone (default), or by the session's context")
    sm.add_argument("--nudge-effect", type=float, default=0.0,
                    help="with --effects uniform: added to the conversion chance of every "
                    "session an intervention reaches (the true uplift; default 0: none)")
    sm.add_argument("--holdout-share", type=float, default=0.0,
                    help="the policy's holdout_share: sessions in the holdout get no effect "
                    "(set the same [policy] holdout_share to replay; default 0)")
    sm.add_argument("--potential-outcomes", action="store_true",
                    help="add each session's outcome with and without each intervention to the "
                    "labels file (lines of type potential_outcomes; replay --labels reads them)")
    sm.add_argument("--outage", metavar="START_MIN:DURATION_MIN",
                    help="the payment gateway fails for every session from START_MIN minutes "
                    "into the traffic for DURATION_MIN minutes (see streamer/tools/outage.py)")
    sm.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from streamer.tools import outage, simulate
    from streamer.tools.progress import progress

    try:
        sessions = list(progress(
            simulate.generate(args.seed, args.sessions, effects=args.effects,
                              nudge_effect=args.nudge_effect, holdout_share=args.holdout_share),
            sys.stderr, "simulate", total=args.sessions, unit="sessions"))
        if args.outage:
            window = outage.Outage.parse(args.outage)
            sessions = outage.inject(sessions, window)
            print(f"outage: payments fail from ts {window.start_ts} to {window.end_ts}",
                  file=sys.stderr)
    except ValueError as exc:
        return options.fail(str(exc))
    if args.events_out or args.labels_out:
        events, labels = simulate.write_jsonl(sessions, args.events_out, args.labels_out,
                                              potential_outcomes=args.potential_outcomes)
        print(f"wrote {len(sessions)} sessions ({events} events, {labels} labels)", file=sys.stderr)
    if args.broker:
        from streamer.stream import worker

        settings = options.settings(args)
        worker.ensure_topics(settings)
        sent = asyncio.run(worker.produce(settings, simulate.interleave(sessions)))
        print(f"produced {sent} records to {settings.bootstrap_servers}", file=sys.stderr)
    return 0
