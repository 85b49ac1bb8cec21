"""Sustained load: requests at a fixed rate for N minutes through the real components, watching their memory.

Everything runs on loopback: a private Mosquitto and a private Tansu, the gateway as its own process and (stage
`cloud`) a cloud worker process on the tiny model. One paho device client publishes QoS 1 requests on a fixed
schedule (`rate` per second, spread over a few device ids) and listens on their downlinks. With the cloud stage a
message counts as received when its reply reaches the device (full round trip); with the gateway stage alone,
when its record is read back from `ebrain.request`. Every `sample_s` the RSS of each process is sampled.

Memory verdict: `rss_start` is taken once a warm-up has passed (model load, first allocations), `rss_end` at the
end of the send phase; the run fails (exit 1) when an ebrain component grew by more than `max_growth_mb`, or
when a message was lost. Rates and durations above the caps are refused: this is a bounded loopback check.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from bench.gateway import CHILD_STOP_S

MAX_RATE = 500.0  # msg/s
MAX_MINUTES = 30.0
TENANT = "load"
DEVICES = 4
STAGES = ("gateway", "cloud")
OURS = ("gateway", "cloud")  # components whose memory growth is checked (the brokers are only reported)


def check_bounds(rate: float, minutes: float) -> None:
    """Refuse work outside the caps (typer.BadParameter: exit 2 before anything starts)."""
    if not 0 < rate <= MAX_RATE:
        raise typer.BadParameter(f"--rate must be in (0, {MAX_RATE:g}] msg/s")
    if not 0 < minutes <= MAX_MINUTES:
        raise typer.BadParameter(f"--minutes must be in (0, {MAX_MINUTES:g}]")


def rss_mb(pid: int) -> float | None:
    """Resident set size of `pid` in MiB (None once it is gone or where /proc is missing)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


@dataclass
class Sampler:
    """Samples the RSS of named processes every `every_s` in a thread until stopped."""

    pids: dict[str, int]
    every_s: float
    samples: list[tuple[float, dict[str, float | None]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.sample()

    def sample(self) -> None:
        self.samples.append((time.monotonic(), {name: rss_mb(pid) for name, pid in self.pids.items()}))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every_s)


def memory_report(samples: list[tuple[float, dict[str, float | None]]], warm_until: float,
                  max_growth_mb: float) -> dict[str, Any]:
    """Per component rss_start (first sample after warm-up), rss_end (last), rss_max and growth vs the bound."""
    out: dict[str, Any] = {}
    names = samples[0][1].keys() if samples else ()
    for name in names:
        series = [(t, s[name]) for t, s in samples if s.get(name) is not None]
        if not series:
            out[name] = {"rss_start": None, "rss_end": None, "rss_max": None, "growth_mb": None, "ok": False}
            continue
        warm = [v for t, v in series if t >= warm_until] or [series[-1][1]]
        start, end = warm[0] or 0.0, series[-1][1] or 0.0
        growth = round(end - start, 1)
        out[name] = {"rss_start": start, "rss_end": end, "rss_max": max(v for _, v in series if v is not None),
                     "growth_mb": growth, "checked": name in OURS,
                     "ok": name not in OURS or growth <= max_growth_mb}
    return out


def percentile_ms(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def _await_ready(proc: subprocess.Popen[bytes], name: str, log: Path, deadline_s: float) -> None:
    """Wait for the child's {"event": "ready"} line on stdout, then drain stdout in a thread."""
    assert proc.stdout is not None
    end = time.monotonic() + deadline_s
    buffer = b""
    while b'"ready"' not in buffer:
        if proc.poll() is not None or time.monotonic() > end:
            raise RuntimeError(f"{name} did not get ready (exit {proc.poll()}); see {log}")
        readable, _, _ = select.select([proc.stdout], [], [], 0.2)
        if readable:
            buffer += os.read(proc.stdout.fileno(), 4096)
    stdout = proc.stdout
    threading.Thread(target=lambda: [None for _ in iter(lambda: stdout.read(4096), b"")], daemon=True).start()



def _spawn(name: str, argv: list[str], env: dict[str, str], workdir: Path, stack: ExitStack,
           ready_s: float) -> int:
    log_path = workdir / f"{name}.log"
    log = log_path.open("wb")
    stack.callback(log.close)
    from ebrain.stack import private  # noqa: PLC0415

    proc = subprocess.Popen([sys.executable, "-m", "ebrain", *argv], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=log)
    stack.callback(private.stop, proc, CHILD_STOP_S)
    _await_ready(proc, name, log_path, ready_s)
    return proc.pid


def start_components(stages: tuple[str, ...], workdir: Path, stack: ExitStack) -> tuple[int, str, dict[str, int]]:
    """Private brokers and the stage processes; (mqtt port, kafka bootstrap, pids by component)."""
    from ebrain.stack import private  # noqa: PLC0415

    brokers = private.start_brokers(workdir, stack)
    mosquitto, tansu, mqtt_port, bootstrap = brokers.mosquitto, brokers.tansu, brokers.mqtt_port, brokers.bootstrap
    uid = f"{os.getpid()}"
    pids = {"mosquitto": mosquitto.pid, "kafka": tansu.pid}
    pids["gateway"] = _spawn("gateway", ["gateway", "run", "--log-level", "WARNING"], {
        "EBRAIN_MQTT__PORT": str(mqtt_port), "EBRAIN_KAFKA_BOOTSTRAP": bootstrap, "EBRAIN_CLIENT_ID": f"load-gw-{uid}",
        "EBRAIN_SHARE_GROUP": f"load{uid}", "EBRAIN_DOWNLINK_GROUP": f"load-down-{uid}",
        "EBRAIN_MQTT__SESSION_EXPIRY_S": "0"}, workdir, stack, 60)
    if "cloud" in stages:
        pids["cloud"] = _spawn("cloud", ["cloud", "worker", "--model", "tiny"], {
            "EBRAIN_KAFKA_BOOTSTRAP": bootstrap, "EBRAIN_GROUP_ID": f"load-cloud-{uid}",
            # One llama.cpp thread: on a busy 2-core machine two threads stalled at their barrier for seconds.
            "EBRAIN_STATE_DIR": str(workdir / "state"), "EBRAIN_N_CTX": "256", "EBRAIN_N_THREADS": "1",
            "EBRAIN_LOG_LEVEL": "WARNING",
            "EBRAIN_SESSION_TIMEOUT_MS": "3000", "EBRAIN_HEARTBEAT_INTERVAL_MS": "1000"}, workdir, stack, 120)
    return mqtt_port, bootstrap, pids


class Device:
    """One paho client publishing every device's requests on schedule and timing what comes back."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as paho  # noqa: PLC0415
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion  # noqa: PLC0415

        self.sent: dict[str, float] = {}
        self.latency: dict[str, float] = {}
        self._lock = threading.Lock()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"load-dev-{os.getpid()}",
                                   protocol=MQTTProtocolVersion.MQTTv5)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.on_message = self._on_message
        self._subscribed = threading.Event()
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def listen_downlinks(self) -> None:
        self._client.subscribe(f"ebrain/{TENANT}/+/down/+", qos=1)
        if not self._subscribed.wait(10):
            raise RuntimeError("no SUBACK for the downlink subscription")

    def publish(self, n: int) -> None:
        from schemas import InferenceRequest, encode, make  # noqa: PLC0415
        from schemas.topics import mqtt_uplink  # noqa: PLC0415

        device = f"dev-{n % DEVICES}"
        request_id = f"L{n}"
        env = make(InferenceRequest(request_id=request_id, prompt=f"load request {n}", max_tokens=8),
                   tenant=TENANT, device=device)
        with self._lock:
            self.sent[request_id] = time.monotonic()
        self._client.publish(mqtt_uplink(TENANT, device, "request"), encode(env), qos=1)

    def arrived(self, request_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            if request_id in self.sent and request_id not in self.latency:
                self.latency[request_id] = now - self.sent[request_id]

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        from schemas import InvalidMessage, decode  # noqa: PLC0415

        with contextlib.suppress(InvalidMessage, AttributeError):  # not a reply of ours
            self.arrived(decode(msg.payload).data.request_id)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _tail_requests(bootstrap: str, device: Device, stop: threading.Event) -> None:
    """Gateway-only stage: a message arrives when its record is read back from ebrain.request."""
    import asyncio  # noqa: PLC0415

    from aiokafka import AIOKafkaConsumer  # noqa: PLC0415

    async def tail() -> None:
        consumer = AIOKafkaConsumer("ebrain.request", bootstrap_servers=bootstrap, group_id=None,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            while not stop.is_set():
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for r in records:
                        device.arrived(json.loads(r.value)["data"]["request_id"])
        finally:
            await consumer.stop()

    asyncio.run(tail())


def run(rate: float, minutes: float, stages: tuple[str, ...], sample_s: float, max_growth_mb: float,
        drain_s: float) -> dict[str, Any]:
    """The whole load run; the result dict (see the module docstring)."""
    check_bounds(rate, minutes)
    total = max(1, int(rate * minutes * 60))
    with tempfile.TemporaryDirectory(prefix="ebrain-load-") as tmp, ExitStack() as stack:
        mqtt_port, bootstrap, pids = start_components(stages, Path(tmp), stack)
        device = Device(mqtt_port)
        stack.callback(device.close)
        stop_tail = threading.Event()
        if "cloud" in stages:
            device.listen_downlinks()
        else:
            tail = threading.Thread(target=_tail_requests, args=(bootstrap, device, stop_tail), daemon=True)
            tail.start()
            stack.callback(tail.join, 10)
            stack.callback(stop_tail.set)
        sampler = Sampler(pids, sample_s)
        started = time.monotonic()
        warm_until = started + min(10.0, 0.2 * minutes * 60)
        sampler.start()
        for n in range(total):
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            device.publish(n)
        send_s = time.monotonic() - started
        sampler.stop()
        end = time.monotonic() + drain_s
        while len(device.latency) < total and time.monotonic() < end:
            time.sleep(0.1)
        latencies = list(device.latency.values())
        memory = memory_report(sampler.samples, warm_until, max_growth_mb)
    lost = total - len(latencies)
    return {
        "bench": "load", "stages": list(stages), "rate": rate, "achieved_rate": round(total / send_s, 1),
        "minutes": minutes, "sent": total, "received": len(latencies), "lost": lost,
        "p50_ms": percentile_ms(latencies, 0.5), "p99_ms": percentile_ms(latencies, 0.99),
        "max_ms": percentile_ms(latencies, 1.0), "samples": len(sampler.samples), "max_growth_mb": max_growth_mb,
        "memory": memory, "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
        "ok": lost == 0 and all(m["ok"] for m in memory.values()),
    }


def register(app: typer.Typer) -> None:
    """Add `ebrain bench load`."""

    @app.command("load")
    def load(
        rate: float = typer.Option(5.0, "--rate", help=f"Requests per second (at most {MAX_RATE:g})."),
        minutes: float = typer.Option(2.0, "--minutes", help=f"Send phase length (at most {MAX_MINUTES:g})."),
        stages: str = typer.Option("gateway,cloud", help="gateway, or gateway,cloud (round trip to the device)."),
        sample_s: float = typer.Option(2.0, "--sample-s", min=0.1, help="RSS sampling period."),
        max_growth_mb: float = typer.Option(64.0, "--max-growth-mb", min=0, help="RSS growth bound per component."),
        drain_s: float = typer.Option(60.0, "--drain-s", min=0, help="Wait this long for stragglers."),
        as_json: bool = typer.Option(False, "--json", help="Only the JSON line (always the last line)."),
    ) -> None:
        """Sustained rate through the gateway (and cloud worker): loss, p50/p99 latency, per-process RSS growth."""
        chosen = tuple(s.strip() for s in stages.split(",") if s.strip())
        if "gateway" not in chosen or not set(chosen) <= set(STAGES):
            raise typer.BadParameter(f"--stages: 'gateway' plus any of {STAGES}")
        check_bounds(rate, minutes)
        result = run(rate, minutes, chosen, sample_s, max_growth_mb, drain_s)
        if not as_json:
            growth = ", ".join(f"{k} {v['growth_mb']:+} MiB" for k, v in result["memory"].items() if v["growth_mb"]
                               is not None)
            typer.echo(f"{result['sent']} sent at {result['achieved_rate']} msg/s, lost {result['lost']}, "
                       f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms; rss growth: {growth}")
        typer.echo(json.dumps(result))
        if not result["ok"]:
            raise typer.Exit(1)
