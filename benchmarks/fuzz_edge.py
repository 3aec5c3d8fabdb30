"""The hostile browser, at scale: generated inputs at one worker's edge, counted.

``python -m benchmarks.fuzz_edge [--inputs 100000] [--concurrency 16] [--seed 1]``
starts an embedded broker and one worker (``python -m streamer worker``, a known
``FW_SECRET``, 127.0.0.1 as a trusted proxy), then sends ``--inputs`` generated inputs:
about half as HTTP requests (``POST /v1/collect`` bodies, with a few ``POST
/v1/sessions`` bodies and stream requests with odd tokens) from rotating client
addresses (``X-Forwarded-For``), with at most ``--concurrency`` in flight, and the rest
as record values produced straight to ``frictionwatch.events``. The inputs are valid
beacons with planted personal data, beacons with wrong, forged and oddly spelled
tokens, wrong types, huge and multi-byte strings, integers past 64 bits, nesting up to
3000 deep, invalid UTF-8, truncated and bit-flipped JSON.

Prints: inputs sent, HTTP status counts by endpoint, answers that were 500 or not JSON
or a refusal without a reason, worker exits (each must be 0), and from the worker's
``/metrics`` the refusals by reason, the dead-lettered inputs by reason and what the
decode-time scrubbing did. Exits non-zero when any of the must-be-zero counts is not.

Everything runs on 127.0.0.1; everything started here is stopped by pid on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from streamer.embedded import EMBEDDED_GROUP_TIMEOUTS, EmbeddedBroker, create_topics, free_port
from streamer.settings import Settings
from streamer.stream.topics import EVENTS_TOPIC, Topics
from streamer.web.tokens import TokenSigner

ROOT = Path(__file__).resolve().parent.parent
#: What Faust logs when an agent dies (the process may live on, consuming nothing).
CRASH = "Crashed reason="
SECRET = "fuzz-secret-0123456789abcdef0123456789"
APP_ID = "fw-fuzz-edge"
SESSIONS = 2000
#: Record values stay under Kafka's default message.max.bytes (1 MB), as a real broker
#: would make any producer do; the worker's own cap (FW_MAX_RECORD_BYTES, 256 KB) is
#: below it, so values between the two are the ones it must refuse.
MAX_KAFKA_VALUE = 900_000
TYPES = ["page_view", "click", "scroll", "js_error", "http_error", "form_error", "search",
         "checkout_attempt", "checkout_failed", "purchase", "help_request",
         "intervention_shown", "intervention_accepted", "intervention_dismissed",
         "session_end", "custom_event"]
FIELDS = ["page", "referrer", "x", "y", "target", "text", "reaction_ms", "direction",
          "message", "url", "status", "field", "query", "results", "step", "reason", "code",
          "value", "channel", "intervention_id", "event_id", "user_id", "received_at",
          "extra", "reaction_cut", "opens_new_tab"]
PII = ["jane.doe@example.com", "4111 1111 1111 1111", "5555-5555-5555-4444",
       "+44 20 7946 0958", "(415) 555-0134", "https://x.example/cb?access_token=s3cr3t#id=t0k3n",
       "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", "x%40example.org"]


# -- generated inputs -----------------------------------------------------------------


class Inputs:
    """Deterministic generators of hostile inputs, from one seed."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.signer = TokenSigner(SECRET.encode(), ttl_s=3600)
        self.sessions = [f"s_fuzz{i:05d}" for i in range(SESSIONS)]
        self.tokens = {sid: self.signer.issue(sid) for sid in self.sessions}

    def string(self) -> str:
        r = self.r
        pick = r.randrange(12)
        if pick == 0:
            return r.choice(PII)
        if pick == 1:
            return f"error for {r.choice(PII)} at {r.choice(PII)}"
        if pick == 2:
            return "\U0001f600" * r.choice([1, 64, 65, 300, 4096])
        if pick == 3:
            return "x" * r.choice([40, 41, 200, 201, 512, 513, 5000, 60_000])
        if pick == 4:
            return "".join(chr(r.randrange(0x20, 0xD7FF)) for _ in range(r.randrange(1, 40)))
        if pick == 5:
            return "".join(chr(r.randrange(0, 0x20)) for _ in range(r.randrange(1, 10)))
        if pick == 6:
            return "/p/" + "/".join(str(r.randrange(10**9)) for _ in range(r.randrange(1, 5)))
        if pick == 7:
            return "#a > b.c:nth-of-type(2) [data-x=\"" + r.choice(PII) + "\"]"
        return "".join(r.choice("abcdefghijk_.:-/?#=&@ 0123456789") for _ in range(r.randrange(0, 30)))

    def scalar(self) -> Any:
        r = self.r
        return r.choice([
            None, True, False, r.randrange(-5, 5), r.randrange(-(2**63), 2**64),
            r.random() * 10 ** r.randrange(0, 300), 3.0, float(2**63), self.string(),
        ])

    def json(self, depth: int = 0) -> Any:
        r = self.r
        if depth > 4 or r.random() < 0.5:
            return self.scalar()
        if r.random() < 0.5:
            return [self.json(depth + 1) for _ in range(r.randrange(4))]
        return {self.string()[:20]: self.json(depth + 1) for _ in range(r.randrange(4))}

    def event(self, sid: str) -> dict[str, Any]:
        r = self.r
        event: dict[str, Any] = {"session_id": sid, "type": r.choice(TYPES),
                                 "ts": r.choice([1_767_225_600_000 + r.randrange(10**7), 0,
                                                 2**63 - 1, -1, 1.5, "now", None])}
        for name in r.sample(FIELDS, r.randrange(0, 8)):
            event[name] = self.scalar() if r.random() < 0.8 else self.json()
        for name in ("session_id", "type", "ts"):
            if r.random() < 0.03:
                event.pop(name)
        if r.random() < 0.03:
            event["session_id"] = self.scalar()
        return event

    def events(self, sid: str) -> list[Any]:
        r = self.r
        n = r.choice([0, 1, 1, 2, 3, 5, 20, 50, 200, 1001])
        out: list[Any] = [self.event(sid if r.random() < 0.95 else r.choice(self.sessions))
                          for _ in range(min(n, 60))]
        if n > 60:  # many events: the first 60 again and again
            out = (out * (n // len(out) + 1))[:n]
        if r.random() < 0.05:
            out.append(self.json())
        return out

    def token_for(self, sid: str) -> Any:
        r = self.r
        token = self.tokens[sid]
        version, claim, expiry, sig = token.split(".")
        return r.choice([
            token, token, token, token, self.tokens[r.choice(self.sessions)],
            f"{version}.{claim}.{expiry}\u00b2.{sig}", f"{version}.{claim}.{'9' * 5000}.{sig}",
            f"{version}.{claim}.0{expiry}.{sig}", f"{version}.{claim}.{expiry}.{sig[:9]}!{sig[9:]}",
            f"{version}.{base64.urlsafe_b64encode(b'other').decode().rstrip('=')}.{expiry}.{sig}",
            self.signer.issue(sid, now=time.time() - 7200), "", None, 5, ["x"], {"t": token},
        ])

    def collect_body(self) -> tuple[bytes, dict[str, str]]:
        r = self.r
        sid = r.choice(self.sessions)
        headers: dict[str, str] = {}
        pick = r.randrange(20)
        if pick == 0:
            return bytes(r.randrange(256) for _ in range(r.randrange(200))), headers
        if pick == 1:
            depth = r.randrange(1, 3000)
            return b"[" * depth + b"]" * depth, headers
        if pick == 2:
            return r.choice([b"1e400", b"18446744073709551616", b'"\\ud800"', b"", b"{", b"null",
                             b'{"events": {}}', b'{"events": 5}']), headers
        body: dict[str, Any] = {"events": self.events(sid)}
        if r.random() < 0.97:
            body["site_key"] = "pk_fuzz" if r.random() < 0.9 else r.choice(["pk_guess", 5, None])
        where = r.randrange(10)
        if where < 6:
            body["token"] = self.token_for(sid)
        elif where == 6:
            body["tokens"] = r.choice([{sid: self.tokens[sid]}, self.json(),
                                       {s: self.tokens[s] for s in self.sessions[:9]}])
        elif where == 7:
            token = self.token_for(sid)
            if isinstance(token, str) and token.isascii():
                headers["X-FW-Token"] = token
        if r.random() < 0.05:  # unknown fields nested too deep for orjson to encode
            depth = r.choice([8, 9, 300, 600])
            deep = b"[" * depth + b"1" + b"]" * depth
            raw = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
            return raw.replace(b'"type":', b'"deep":' + deep + b',"type":'), headers
        raw = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
        if r.random() < 0.05:  # truncated or bit-flipped
            flipped = bytearray(raw)
            for _ in range(r.randrange(1, 4)):
                if flipped:
                    flipped[r.randrange(len(flipped))] = r.randrange(256)
            raw = bytes(flipped[: r.randrange(len(flipped) + 1)])
        return raw, headers

    def sessions_body(self) -> bytes:
        r = self.r
        sid = r.choice(self.sessions)
        return orjson.dumps(r.choice([
            {"site_key": "pk_fuzz"}, {}, {"site_key": "pk_fuzz", "session_id": sid,
                                          "token": self.token_for(sid)},
            {"site_key": "pk_fuzz", "session_id": self.scalar(), "token": self.scalar()},
            self.json(),
        ]), option=orjson.OPT_NON_STR_KEYS)

    def stream_path(self) -> str:
        sid = self.r.choice(self.sessions)
        token = self.token_for(sid)
        if token == self.tokens[sid]:
            token = token[:-1] + ("A" if token[-1] != "A" else "E")  # never open a stream
        return (f"/v1/sessions/{quote(self.string()[:40] or sid, safe='')}"
                f"/interventions?token={quote(str(token))}")

    def record(self) -> tuple[bytes | None, bytes]:
        r = self.r
        sid = r.choice(self.sessions)
        key: bytes | None = r.choice([sid.encode(), sid.encode(), None, b"other", b"\xff\xfe"])
        pick = r.randrange(12)
        if pick == 0:
            return key, bytes(r.randrange(256) for _ in range(r.randrange(300)))
        if pick == 1:
            depth = r.randrange(1, 1100)
            return key, b"[" + b"{}," + b"[" * depth + b"]" * depth + b"]"
        if pick == 2:
            inner = b"[" * 300 + b"]" * 300
            return key, (b'[{"session_id": "' + sid.encode() + b'", "type": "x", "ts": "no", "d": '
                         + inner + b"}]")
        events = self.events(sid)
        value = orjson.dumps(events[0] if len(events) == 1 and r.random() < 0.5 else events,
                             option=orjson.OPT_NON_STR_KEYS)
        if len(value) > MAX_KAFKA_VALUE:  # what a broker would refuse from any producer
            value = value[:MAX_KAFKA_VALUE]
        return key, value


# -- the worker -----------------------------------------------------------------------


def metric_samples(web: str) -> list[tuple[str, dict[str, str], float]]:
    with urllib.request.urlopen(f"{web}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return [(s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text) for s in family.samples]


def metric(web: str, name: str, **labels: str) -> float:
    return sum(v for n, ls, v in metric_samples(web)
               if n == name and all(ls.get(k) == want for k, want in labels.items()))


def wait_for(check: Callable[[], bool], timeout: float, what: str,
             process: subprocess.Popen[bytes], log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the worker exited with {process.returncode} waiting for {what}")
        if log is not None and CRASH in log.read_text(errors="replace"):
            raise SystemExit(f"an agent of the worker crashed waiting for {what}; log: {log}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def start_worker(broker: EmbeddedBroker, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    settings = Settings.load(broker=broker.address, app_id=APP_ID, partitions=2)
    asyncio.run(create_topics(broker.address, Topics.names(settings), settings.partitions))
    env = {**os.environ, "FW_SECRET": SECRET, "FW_SITE_KEYS": "pk_fuzz",
           "FW_TRUSTED_PROXIES": "127.0.0.1",
           **{f"FW_{k.upper()}": str(v) for k, v in EMBEDDED_GROUP_TIMEOUTS.items()}}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamer", "worker", "--broker", broker.address,
             "--app-id", APP_ID, "--partitions", "2", "--web-port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, env=env,
        )
    web = f"http://127.0.0.1:{port}"
    wait_for(lambda: metric(web, "frictionwatch_records_total") >= 0, 90, "the web server", process)
    asyncio.run(produce_all(broker.address, [(b"probe", b'{"session_id":"probe","type":"x","ts":1}')]))
    wait_for(lambda: metric(web, "frictionwatch_records_total") >= 1, 120,
             f"the worker to consume (log {log})", process)
    return process, web


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


# -- sending ----------------------------------------------------------------------------


async def produce_all(bootstrap: str, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 << 20,
                                linger_ms=5)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(EVENTS_TOPIC, value=value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


class Tally:
    def __init__(self) -> None:
        self.status: collections.Counter[tuple[str, int]] = collections.Counter()
        self.not_json: collections.Counter[tuple[str, int]] = collections.Counter()
        self.no_reason = 0
        self.failed = 0


async def send_http(web: str, jobs: list[tuple[str, str, bytes | None, dict[str, str]]],
                    concurrency: int, tally: Tally,
                    process: subprocess.Popen[bytes]) -> None:
    queue: asyncio.Queue[tuple[str, str, bytes | None, dict[str, str]]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def one(endpoint: str, path: str, body: bytes | None, headers: dict[str, str]) -> None:
            method = "GET" if body is None else "POST"
            try:
                async with http.request(method, web + path, data=body, headers={
                        "Content-Type": "text/plain", **headers}) as resp:
                    raw = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError):
                tally.failed += 1
                return
            tally.status[(endpoint, status)] += 1
            try:
                answer = orjson.loads(raw)
            except orjson.JSONDecodeError:
                tally.not_json[(endpoint, status)] += 1  # e.g. the router's own 404
                return
            if status >= 400 and not (isinstance(answer, dict) and answer.get("error")):
                tally.no_reason += 1

        async def worker_loop() -> None:
            while not queue.empty():
                await one(*queue.get_nowait())

        started = time.monotonic()
        loops = [asyncio.create_task(worker_loop()) for _ in range(concurrency)]
        while not all(t.done() for t in loops):
            await asyncio.sleep(5)
            done = len(jobs) - queue.qsize()
            print(f"  http: {done}/{len(jobs)} sent, {time.monotonic() - started:.0f} s, "
                  f"worker {'alive' if process.poll() is None else 'EXITED'}", file=sys.stderr)
        await asyncio.gather(*loops)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    gen = Inputs(args.seed)
    n_http = args.inputs // 2
    jobs: list[tuple[str, str, bytes | None, dict[str, str]]] = []
    for i in range(n_http):
        client = {"X-Forwarded-For": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"}
        kind = gen.r.randrange(20)
        if kind == 0:
            jobs.append(("sessions", "/v1/sessions", gen.sessions_body(), client))
        elif kind == 1:
            jobs.append(("stream", gen.stream_path(), None, client))
        else:
            body, headers = gen.collect_body()
            jobs.append(("collect", "/v1/collect", body, {**client, **headers}))
    records = [gen.record() for _ in range(args.inputs - n_http)]
    print(f"generated {len(jobs)} HTTP requests and {len(records)} Kafka records",
          file=sys.stderr)

    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="fw-fuzz-") as tmp, EmbeddedBroker() as broker:
        log = Path(tmp) / "worker.log"
        process, web = start_worker(broker, log)
        try:
            before = metric(web, "frictionwatch_records_total")
            started = time.monotonic()
            asyncio.run(produce_all(broker.address, records))
            print(f"  kafka: {len(records)} records produced in "
                  f"{time.monotonic() - started:.0f} s", file=sys.stderr)
            asyncio.run(send_http(web, jobs, args.concurrency, tally, process))
            # Every produced record, and the beacons' records: until the count stands still.
            wait_for(lambda: metric(web, "frictionwatch_records_total") - before >= len(records),
                     600, "the worker to consume every produced record", process, log)
            last = -1.0
            while (now := metric(web, "frictionwatch_records_total")) != last:
                last = now
                time.sleep(3)
            samples = metric_samples(web)
            alive = process.poll() is None
        finally:
            stop(process)
        log_text = log.read_text(errors="replace")

    def by(name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = collections.defaultdict(float)
        for n, labels, value in samples:
            if n == name and value:
                out[labels.get(label, "")] += value
        return dict(sorted(out.items()))

    rejections: dict[str, float] = collections.defaultdict(float)
    for n, labels, value in samples:
        if n == "frictionwatch_web_rejections_total" and value:
            rejections[f"{labels['endpoint']}/{labels['reason']}"] += value
    statuses = collections.Counter({f"{e} {s}": c for (e, s), c in tally.status.items()})
    five_hundreds = sum(c for (_, s), c in tally.status.items() if s == 500)
    print(f"\ninputs sent: {len(jobs) + len(records)} ({len(jobs)} HTTP requests, "
          f"{len(records)} Kafka records on {EVENTS_TOPIC})")
    print("HTTP status counts: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))
    not_json = ", ".join(f"{e} {s}: {c}" for (e, s), c in sorted(tally.not_json.items()))
    print(f"HTTP 500s: {five_hundreds}   not JSON: {sum(tally.not_json.values())}"
          f"{f' ({not_json})' if not_json else ''}   "
          f"refusals without a reason: {tally.no_reason}   transport failures: {tally.failed}")
    crashes = log_text.count(CRASH)
    print(f"worker exits: {0 if alive else 1}   agent crashes: {crashes}   "
          f"tracebacks in its log: {log_text.count('Traceback')}")
    print("refusals by reason (/metrics web_rejections): "
          + ", ".join(f"{k}: {v:.0f}" for k, v in sorted(rejections.items())))
    print("invalid inputs by reason (/metrics invalid_events, dead-lettered or answered): "
          + ", ".join(f"{k}: {v:.0f}" for k, v in by("frictionwatch_invalid_events_total",
                                                       "reason").items()))
    print("scrubbed at decoding (/metrics scrubbed): "
          + ", ".join(f"{k}: {v:.0f}" for k, v in by("frictionwatch_scrubbed_total",
                                                       "kind").items()))
    print(f"records consumed: {sum(by('frictionwatch_records_total', '').values()):.0f}   "
          f"valid events: {sum(by('frictionwatch_events_total', 'type').values()):.0f}   "
          f"interventions: {sum(by('frictionwatch_interventions_total', 'kind').values()):.0f}")
    bad = five_hundreds + sum(tally.not_json.values()) + tally.no_reason + (0 if alive else 1) + crashes
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
