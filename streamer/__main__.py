"""``frictionwatch`` (also ``python -m streamer``): run, worker, replay, compare, report,
simulate, bench."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from detectors.errors import DetectorError
from streamer.settings import Settings

if TYPE_CHECKING:
    from detectors.session import Engine


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    return Settings.load(
        broker=getattr(args, "broker", None),
        web_port=getattr(args, "web_port", None),
        web_host=getattr(args, "web_host", None),
        partitions=getattr(args, "partitions", None),
        app_id=getattr(args, "app_id", None),
        config_file=getattr(args, "config", None),
        loglevel=getattr(args, "loglevel", None),
        **extra,
    )


def cmd_worker(args: argparse.Namespace) -> int:
    from streamer import worker

    settings = _settings(args)
    if args.create_topics:
        worker.ensure_topics(settings)
    return worker.run_worker(settings)


def cmd_run(args: argparse.Namespace) -> int:
    from streamer import worker

    return worker.run_local(
        _settings(args), traffic=args.traffic, speed=args.speed, seed=args.seed
    )


def cmd_replay(args: argparse.Namespace) -> int:
    from detectors.session import Engine
    from streamer.replay import replay_file

    settings = _settings(args)
    engine = Engine.from_config(settings.detection)
    if args.labels:
        return _replay_report(args, settings, engine)
    if args.json:
        print("frictionwatch: error: replay --json needs --labels", file=sys.stderr)
        return 2
    if args.out:
        with open(args.out, "wb") as out:
            written = replay_file(args.file, engine, out, max_record_bytes=settings.max_record_bytes,
                                  idle_ms=settings.idle_timeout_ms)
        print(f"wrote {written} lines to {args.out}", file=sys.stderr)
    else:
        replay_file(args.file, engine, sys.stdout.buffer, max_record_bytes=settings.max_record_bytes,
                    idle_ms=settings.idle_timeout_ms)
    return 0


def _replay_report(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    from streamer import evaluate

    try:
        labels = evaluate.read_labels(args.labels)
    except evaluate.LabelsError as exc:
        print(f"frictionwatch: error: {exc}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        source = sys.stdin.buffer if args.file == "-" else stack.enter_context(open(args.file, "rb"))
        out = stack.enter_context(open(args.out, "wb")) if args.out else None
        report = evaluate.replay_report(source, engine, labels, out=out, err=sys.stderr,
                                        max_record_bytes=settings.max_record_bytes,
                                        idle_ms=settings.idle_timeout_ms)
    if args.json:
        evaluate.print_json(report)
    else:
        print(evaluate.format_report(report))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from detectors.errors import ConfigError
    from detectors.session import Engine
    from streamer import evaluate
    from streamer.settings import load_detection_config

    engines = []
    for path in (args.config_a, args.config_b):
        try:
            engines.append(Engine.from_config(load_detection_config(path)))
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    try:
        labels = evaluate.read_labels(args.labels)
    except evaluate.LabelsError as exc:
        print(f"frictionwatch: error: {exc}", file=sys.stderr)
        return 2
    settings = _settings(args)
    stdin = sys.stdin.buffer.readlines() if args.file == "-" else None
    reports = []
    for name, engine in zip("AB", engines, strict=True):
        with contextlib.ExitStack() as stack:
            source = stdin if stdin is not None else stack.enter_context(open(args.file, "rb"))
            reports.append(evaluate.replay_report(
                source, engine, labels, err=sys.stderr, what=f"replay {name}",
                max_record_bytes=settings.max_record_bytes, idle_ms=settings.idle_timeout_ms))
    if args.json:
        evaluate.print_json({"a": reports[0], "b": reports[1]})
    else:
        print(f"A = {args.config_a}\nB = {args.config_b}\n")
        print(evaluate.format_comparison(*reports))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from streamer import evaluate

    if (args.file is None) == (not args.metrics):
        print("frictionwatch: error: report needs a FILE to replay or --metrics URL, not both",
              file=sys.stderr)
        return 2
    if args.metrics:
        texts = []
        for url in args.metrics:
            try:
                texts.append(evaluate.fetch_metrics(url))
            except (OSError, ValueError) as exc:
                print(f"frictionwatch: error: {url}: {exc}", file=sys.stderr)
                return 2
        try:
            model = evaluate.model_from_text(texts)
        except ValueError as exc:
            print(f"frictionwatch: error: not Prometheus metrics: {exc}", file=sys.stderr)
            return 2
    else:
        from detectors.session import Engine

        settings = _settings(args)
        engine = Engine.from_config(settings.detection)
        with contextlib.ExitStack() as stack:
            source = sys.stdin.buffer if args.file == "-" else stack.enter_context(open(args.file, "rb"))
            model = evaluate.offline_report(source, engine, err=sys.stderr,
                                            max_record_bytes=settings.max_record_bytes,
                                            idle_ms=settings.idle_timeout_ms)
    if args.json:
        evaluate.print_json(model)
    else:
        print(evaluate.format_model(model))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from streamer import simulate

    try:
        sessions = list(simulate.generate(args.seed, args.sessions, nudge_effect=args.nudge_effect,
                                          holdout_share=args.holdout_share))
        if args.outage:
            from streamer import outage

            window = outage.Outage.parse(args.outage)
            sessions = outage.inject(sessions, window)
            print(f"outage: payments fail from ts {window.start_ts} to {window.end_ts}",
                  file=sys.stderr)
    except ValueError as exc:
        print(f"frictionwatch: error: {exc}", file=sys.stderr)
        return 2
    if args.events_out or args.labels_out:
        simulate.write_jsonl(sessions, args.events_out, args.labels_out)
        print(f"wrote {len(sessions)} sessions", file=sys.stderr)
    if args.broker:
        from streamer import worker

        settings = _settings(args)
        worker.ensure_topics(settings)
        sent = asyncio.run(worker.produce(settings, simulate.interleave(sessions)))
        print(f"produced {sent} records to {settings.bootstrap_servers}", file=sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from benchmarks import pipeline_throughput  # type: ignore[import-not-found]

    return int(pipeline_throughput.main(["--events", str(args.events)]))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="frictionwatch",
        description="Real-time friction detection: clickstream in, nudges and handoffs out.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, *, kafka: bool = True, web: bool = True) -> None:
        sp.add_argument("--config", help="detector/policy TOML file (FW_CONFIG_FILE)")
        if kafka:
            sp.add_argument("--partitions", type=int, help="partitions of new topics (default 4)")
        if web:
            sp.add_argument("--app-id", help="Faust app id = consumer group (default frictionwatch)")
            sp.add_argument("--loglevel", help="worker log level (default warning)")
            sp.add_argument("--web-port", type=int, help="HTTP port (default 6066)")
            sp.add_argument("--web-host", help="HTTP bind address (default 127.0.0.1)")

    run = sub.add_parser("run", help="embedded broker + worker + web + demo traffic")
    common(run)
    run.add_argument("--no-traffic", dest="traffic", action="store_false",
                     help="do not feed built-in synthetic traffic")
    run.add_argument("--speed", type=float, default=10.0,
                     help="synthetic traffic runs this many times faster than real time")
    run.add_argument("--seed", type=int, default=1, help="seed of the synthetic traffic")
    run.set_defaults(func=cmd_run)

    wk = sub.add_parser("worker", help="a worker against a Kafka cluster (production path)")
    common(wk)
    wk.add_argument("--broker", help="bootstrap servers, e.g. kafka1:9092,kafka2:9092")
    wk.add_argument("--no-create-topics", dest="create_topics", action="store_false",
                    help="do not create missing topics at start")
    wk.set_defaults(func=cmd_worker)

    rp = sub.add_parser("replay", help="run detectors and policy offline over a JSONL file")
    common(rp, kafka=False, web=False)
    rp.add_argument("file", help="JSONL file of events ('-' for stdin)")
    rp.add_argument("--out", help="write output lines here instead of stdout")
    rp.add_argument("--labels", help="labels JSONL (from simulate): print a precision/recall report")
    rp.add_argument("--json", action="store_true", help="with --labels: the report as one JSON object")
    rp.set_defaults(func=cmd_replay)

    cp = sub.add_parser("compare", help="two detector/policy configs over one file, side by side")
    cp.add_argument("file", help="JSONL file of events ('-' for stdin)")
    cp.add_argument("config_a", metavar="A.toml", help="detector/policy TOML of config A")
    cp.add_argument("config_b", metavar="B.toml", help="detector/policy TOML of config B")
    cp.add_argument("--labels", required=True, help="labels JSONL (from simulate)")
    cp.add_argument("--json", action="store_true", help='print {"a": report, "b": report}')
    cp.set_defaults(func=cmd_compare)

    rt = sub.add_parser("report", help="risk AUC and uplift of interventions: offline over a "
                        "replay, or live from workers' /metrics")
    common(rt, kafka=False, web=False)
    rt.add_argument("file", nargs="?", help="JSONL file of events to replay ('-' for stdin)")
    rt.add_argument("--metrics", action="append", metavar="URL",
                    help="a worker's /metrics URL instead of a file (repeat for more workers)")
    rt.add_argument("--json", action="store_true", help="the report as one JSON object")
    rt.set_defaults(func=cmd_report)

    sm = sub.add_parser("simulate", help="labelled synthetic traffic (seeded, reproducible)")
    common(sm, web=False)
    sm.add_argument("--seed", type=int, default=1)
    sm.add_argument("--sessions", type=int, default=1000)
    sm.add_argument("--events-out", help="write events as JSONL here")
    sm.add_argument("--labels-out", help="write friction labels as JSONL here")
    sm.add_argument("--broker", help="also produce the traffic to this Kafka")
    sm.add_argument("--nudge-effect", type=float, default=0.0,
                    help="added to the conversion chance of friction sessions an intervention "
                    "reaches (the true uplift; default 0)")
    sm.add_argument("--holdout-share", type=float, default=0.0,
                    help="the policy's holdout_share: friction sessions in the holdout get no "
                    "effect (set the same [policy] holdout_share to replay; default 0)")
    sm.add_argument("--outage", metavar="START_MIN:DURATION_MIN",
                    help="the payment gateway fails for every session from START_MIN minutes "
                    "into the traffic for DURATION_MIN minutes (see streamer/outage.py)")
    sm.set_defaults(func=cmd_simulate)

    bn = sub.add_parser("bench", help="throughput benchmark on the embedded broker")
    bn.add_argument("--events", type=int, default=200_000)
    bn.set_defaults(func=cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DetectorError as exc:
        print(f"frictionwatch: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
