"""Gateway throughput: N QoS 1 ~1 KB messages through MQTT -> gateway -> Kafka, against MQTT alone, in one run.

Both phases use the same private Mosquitto, the same payload bytes and the same publisher processes (several,
so one Python publisher is not the bottleneck). Raw: a plain subscriber counts what arrives. Bridged: the
gateway runs as its own process(es) (`python -m ebrain gateway run`), and a Kafka consumer counts unique
message ids in `ebrain.request`. Rates are from the first publish until the last message arrived; latency is
per message from its publish call to its arrival (at the subscriber, or read back from Kafka).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import typer

TENANT = "bench"
STAMP = b"0000000000.000000"  # replaced by the publish time (fixed width, so offsets hold)
MESSAGE_BYTES = 1024
CHILD_STOP_S = 30.0  # SIGTERM, then SIGKILL after this long (a gateway drains its in-flight window first)


def _payloads(device: str, count: int, first: int) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """(topic, [(prefix, suffix)]): each message is prefix + publish time + suffix, ~1 KB, a valid request."""
    from schemas import InferenceRequest, encode, make  # noqa: PLC0415
    from schemas.topics import mqtt_uplink  # noqa: PLC0415

    out = []
    for n in range(first, first + count):
        env = make(InferenceRequest(request_id=f"b{n}", prompt=STAMP.decode() + " x"), tenant=TENANT, device=device)
        raw = encode(env)
        pad = b"y" * max(0, MESSAGE_BYTES - len(raw))
        raw = raw.replace(STAMP + b" x", STAMP + b" x" + pad, 1)
        prefix, _, suffix = raw.partition(STAMP)
        out.append((prefix, suffix))
    return mqtt_uplink(TENANT, device, "request").encode(), out


def _publisher(port: int, topic_prefix: str, worker: int, count: int, first: int, ready: Any, go: Any) -> None:
    """One publisher process: QoS 1, up to 1000 in flight; returns once every PUBACK arrived."""
    import paho.mqtt.client as paho  # noqa: PLC0415
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion  # noqa: PLC0415

    topic, bodies = _payloads(f"dev-{worker}", count, first)
    if topic_prefix:
        topic = f"{topic_prefix}/{worker}".encode()
    acked = 0
    done = mp.Event()

    def on_publish(*_: Any) -> None:
        nonlocal acked
        acked += 1
        if acked == count:
            done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    ready.wait()  # barrier: every publisher is connected and has its payloads built
    go.wait()
    for prefix, suffix in bodies:
        client.publish(topic.decode(), prefix + f"{time.time():17.6f}".encode() + suffix, qos=1)
    done.wait(300)
    client.disconnect()
    client.loop_stop()


def _stamp(payload: bytes) -> float:
    i = payload.index(b'"prompt":"') + len(b'"prompt":"')
    return float(payload[i:i + len(STAMP)])


def _run_publishers(port: int, topic_prefix: str, n: int, procs: int) -> tuple[list[Any], float]:
    ctx = mp.get_context("spawn")
    ready, go = ctx.Barrier(procs + 1), ctx.Event()
    share, workers = n // procs, []
    for w in range(procs):
        count = share + (n % procs if w == procs - 1 else 0)
        p = ctx.Process(target=_publisher, args=(port, topic_prefix, w, count, w * share, ready, go), daemon=True)
        p.start()
        workers.append(p)
    ready.wait(120)
    started = time.time()
    go.set()
    return workers, started


def _raw(port: int, n: int, procs: int, deadline_s: float) -> dict[str, Any]:
    """Publish to a plain subscriber (no bridge); count and time what arrives."""
    import paho.mqtt.client as paho  # noqa: PLC0415
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion  # noqa: PLC0415
    from paho.mqtt.packettypes import PacketTypes  # noqa: PLC0415
    from paho.mqtt.properties import Properties  # noqa: PLC0415

    latencies: list[float] = []
    seen: set[bytes] = set()
    last = [0.0]

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        now = time.time()
        latencies.append(now - _stamp(msg.payload))
        seen.add(msg.payload[: msg.payload.index(b'"type"')])  # the envelope id comes first
        last[0] = now

    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-raw-{os.getpid()}",
                      protocol=MQTTProtocolVersion.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.ReceiveMaximum = 1000
    sub.on_message = on_message
    sub.connect("127.0.0.1", port, properties=props)
    sub.subscribe("bench/raw/+", qos=1)
    sub.loop_start()
    time.sleep(0.5)  # SUBACK: the subscription must be in place before the first publish
    workers, started = _run_publishers(port, "bench/raw", n, procs)
    end = time.time() + deadline_s
    while len(latencies) < n and time.time() < end:
        time.sleep(0.05)
    for w in workers:
        w.join(30)
    sub.loop_stop()
    sub.disconnect()
    return {"rate": len(seen) / max(last[0] - started, 1e-9), "lost": n - len(seen), "lat": latencies}


def _gateways(port: int, bootstrap: str, replicas: int, workdir: Path, stack: ExitStack) -> list[int]:
    """Start the gateway replicas, wait for each one's ready line; their pids."""
    from ebrain.stack import private  # noqa: PLC0415

    pids = []
    for r in range(replicas):
        env = {**os.environ, "EBRAIN_MQTT__PORT": str(port), "EBRAIN_KAFKA_BOOTSTRAP": bootstrap,
               "EBRAIN_CLIENT_ID": f"bench-gw-{r}-{os.getpid()}", "EBRAIN_SHARE_GROUP": f"bench{os.getpid()}",
               "EBRAIN_DOWNLINK_GROUP": f"bench-down-{os.getpid()}", "EBRAIN_MQTT__SESSION_EXPIRY_S": "0"}
        log = (workdir / f"gateway-{r}.log").open("wb")
        stack.callback(log.close)
        # EBRAIN_BENCH_PROFILE=DIR: each replica writes a cProfile dump there (for finding the hot path).
        profile = os.environ.get("EBRAIN_BENCH_PROFILE")
        argv = [sys.executable, "-m", "ebrain", "gateway", "run", "--log-level", "WARNING"]
        if profile:
            argv = [sys.executable, "-m", "cProfile", "-o", f"{profile}/gateway-{r}.prof", *argv[1:]]
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=log)
        stack.callback(private.stop, proc, CHILD_STOP_S)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if b'"ready"' not in line:
            raise RuntimeError(f"gateway {r} did not get ready; see {workdir / f'gateway-{r}.log'}")
        pids.append(proc.pid)
    return pids


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process used so far; 0 where /proc is not available."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _bridged(port: int, bootstrap: str, n: int, procs: int, deadline_s: float) -> dict[str, Any]:
    """Publish through the gateway; count unique ids that reach Kafka."""
    import asyncio  # noqa: PLC0415

    from aiokafka import AIOKafkaConsumer  # noqa: PLC0415

    async def count(started_at: list[float]) -> dict[str, Any]:
        consumer = AIOKafkaConsumer("ebrain.request", bootstrap_servers=bootstrap, group_id=None,
                                    auto_offset_reset="earliest", fetch_max_bytes=16 * 1024 * 1024,
                                    max_partition_fetch_bytes=4 * 1024 * 1024)
        await consumer.start()
        seen: set[bytes] = set()
        latencies: list[float] = []
        last = 0.0
        try:
            workers, started_at[0] = await asyncio.to_thread(_run_publishers, port, "", n, procs)
            end = time.time() + deadline_s
            while len(seen) < n and time.time() < end:
                batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
                now = time.time()
                for records in batches.values():
                    for r in records:
                        ident = r.value[: r.value.index(b'"type"')]
                        if ident not in seen:
                            seen.add(ident)
                            latencies.append(now - _stamp(r.value))
                            last = now
            for w in workers:
                await asyncio.to_thread(w.join, 30)
        finally:
            await consumer.stop()
        return {"rate": len(seen) / max(last - started_at[0], 1e-9), "lost": n - len(seen), "lat": latencies}

    return asyncio.run(count([0.0]))


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def run(n: int, procs: int, replicas: int, deadline_s: float) -> dict[str, Any]:
    """Both phases on a private Mosquitto and a private Tansu; the result dict (see module docstring)."""
    from ebrain.stack import private  # noqa: PLC0415

    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="ebrain-bench-") as tmp:
        workdir = Path(tmp)
        brokers = private.start_brokers(workdir, stack)
        mosquitto, tansu, mqtt_port, bootstrap = brokers.mosquitto, brokers.tansu, brokers.mqtt_port, brokers.bootstrap
        broker_cpu = _cpu_s(mosquitto.pid)
        raw = _raw(mqtt_port, n, procs, deadline_s)
        raw_broker_cpu, broker_cpu = _cpu_s(mosquitto.pid) - broker_cpu, _cpu_s(mosquitto.pid)
        pids = _gateways(mqtt_port, bootstrap, replicas, workdir, stack)
        before = [_cpu_s(p) for p in (*pids, tansu.pid)]
        bridged = _bridged(mqtt_port, bootstrap, n, procs, deadline_s)
        after = [_cpu_s(p) for p in (*pids, tansu.pid)]
        bridged_broker_cpu = _cpu_s(mosquitto.pid) - broker_cpu
        gateway_cpu = sum(a - b for a, b in zip(after[:-1], before[:-1], strict=True))
        kafka_cpu = after[-1] - before[-1]
    return {
        "bench": "gateway",
        "messages": n,
        "message_bytes": MESSAGE_BYTES,
        "publishers": procs,
        "replicas": replicas,
        "cpus": os.cpu_count(),
        "bridged_msgs_per_s": round(bridged["rate"]),
        "raw_msgs_per_s": round(raw["rate"]),
        "ratio": round(bridged["rate"] / raw["rate"], 3) if raw["rate"] else None,
        "lost": bridged["lost"],
        "raw_lost": raw["lost"],
        "p50_ms": _pct(bridged["lat"], 0.5),
        "p99_ms": _pct(bridged["lat"], 0.99),
        "raw_p50_ms": _pct(raw["lat"], 0.5),
        "raw_p99_ms": _pct(raw["lat"], 0.99),
        # CPU seconds each server used during its phase: where the 2 cores went.
        "cpu_s": {"gateway": round(gateway_cpu, 2), "kafka": round(kafka_cpu, 2),
                  "mosquitto_bridged": round(bridged_broker_cpu, 2), "mosquitto_raw": round(raw_broker_cpu, 2)},
        "gateway_cpu_us_per_msg": round(1e6 * gateway_cpu / n, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def register(app: typer.Typer) -> None:
    """Add `ebrain bench gateway`."""

    @app.command("gateway")
    def gateway(
        messages: int = typer.Option(20_000, "--messages", min=100, help="Messages per phase."),
        publishers: int = typer.Option(3, min=1, help="Publisher processes."),
        replicas: int = typer.Option(1, min=1, help="Gateway replicas (shared subscription)."),
        deadline_s: float = typer.Option(120.0, help="Give up waiting for stragglers after this long."),
        as_json: bool = typer.Option(False, "--json", help="Only the JSON line (always the last line)."),
    ) -> None:
        """Bridged (MQTT -> gateway -> Kafka) vs raw MQTT rate, loss and latency for ~1 KB QoS 1 messages."""
        result = run(messages, publishers, replicas, deadline_s)
        if not as_json:
            typer.echo(
                f"bridged {result['bridged_msgs_per_s']} msg/s vs raw {result['raw_msgs_per_s']} msg/s "
                f"(ratio {result['ratio']}), lost {result['lost']}, "
                f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms"
            )
        typer.echo(json.dumps(result))
