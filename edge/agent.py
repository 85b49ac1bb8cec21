"""The edge agent: draft locally, publish every inference, escalate per policy, await the cloud's reply."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Self

from ebrain.inference import Completion, Engine, EngineOverloaded
from ebrain.inference.ports import EngineError
from ebrain.mqtt import MqttMessage
from ebrain.observability import trace
from edge import metrics
from edge.core.policy import Decision, LocalAnswer, PolicyConfig, after_inference, before_inference
from edge.spool import SpoolFullError
from edge.telemetry import CpuMeter, RateMeter, peak_rss_mb, rss_mb
from edge.uplink import Uplink
from schemas import (
    Envelope,
    Escalation,
    InferenceRequest,
    InferenceResult,
    InvalidMessage,
    ModelUpdate,
    Telemetry,
    decode,
    make,
    new_trace_id,
)

if TYPE_CHECKING:
    from edge.ota import ModelManager
from schemas.topics import mqtt_downlink_filter, parse_mqtt

log = logging.getLogger(__name__)
# Refusal reasons when the spool cannot take a must-arrive message (InferenceResult.reason, metric label).
SPOOL_FULL, SPOOL_IO_ERROR = "spool_full", "spool_io_error"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The final answer to one request and how long the device waited for it."""

    result: InferenceResult
    e2e_ms: float
    escalation_reason: str | None = None


class Downlink(Protocol):
    """What the agent reads its downlink from: ebrain.mqtt.MqttClient or edge.link.MqttLink."""

    async def subscribe(self, topic_filter: str, qos: int = 1) -> None: ...

    def messages(self) -> AsyncIterator[MqttMessage]: ...


class EdgeAgent:
    """Owns the downlink reader and telemetry tasks; `handle` answers one request end to end.

    `uplink` may be the plain MQTT one or edge.forward.StoreAndForward (spooling while offline); `ota`, when
    given, receives model update orders from the downlink and is started and stopped with the agent.
    """

    def __init__(
        self,
        *,
        tenant: str,
        device: str,
        engine: Engine,
        mqtt: Downlink,
        uplink: Uplink,
        policy: PolicyConfig,
        max_pending: int = 64,
        reply_timeout_s: float = 120.0,
        telemetry_interval_s: float = 30.0,
        ota: ModelManager | None = None,
    ) -> None:
        self.tenant, self.device = tenant, device
        self._engine, self._mqtt, self._uplink, self._policy = engine, mqtt, uplink, policy
        self._ota = ota
        self._reply_timeout_s = reply_timeout_s
        self._telemetry_interval_s = telemetry_interval_s
        self._slots = asyncio.Semaphore(max_pending)
        self._pending: dict[str, asyncio.Future[InferenceResult]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._started = time.monotonic()
        self._cpu, self._rate = CpuMeter(), RateMeter()
        self._tokens, self._busy_s = 0, 0.0
        # latency_ms_sum: local inference time of every draft, so a rollout can compare mean latency per request.
        self.counters: dict[str, float] = {"local": 0, "escalated": 0, "replies": 0, "failed": 0, "rejected": 0,
                                           "late_replies": 0, "latency_ms_sum": 0.0}

    async def __aenter__(self) -> Self:
        if not self._tasks:
            await self._mqtt.subscribe(mqtt_downlink_filter(self.tenant, self.device), qos=1)
            if self._ota is not None:
                await self._ota.start()
            self._tasks = [
                asyncio.create_task(self._read_downlink(), name=f"edge-downlink-{self.device}"),
                asyncio.create_task(self._telemetry_loop(), name=f"edge-telemetry-{self.device}"),
            ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._ota is not None:
            await self._ota.stop()
        for future in self._pending.values():
            future.cancel()

    @property
    def engine(self) -> Engine:
        return self._engine

    async def handle(self, request: InferenceRequest, *, on_piece: Callable[[str], None] | None = None) -> Outcome:
        """Answer `request`: locally when the policy trusts the draft, else via the cloud.

        `on_piece` receives the local draft's text as it is generated (streaming); the policy judges the
        whole draft afterwards, so a streamed draft may still be replaced by the cloud's answer.
        """
        start = time.monotonic()
        trace_id = new_trace_id()
        decision = before_inference(request, self._policy)
        completion: Completion | None = None
        if decision is None:
            try:
                completion = await self._complete(request, on_piece)
            except EngineOverloaded:
                return await self._reject(request, trace_id, start, "local_queue_full")
            except EngineError as exc:
                log.warning("local engine failed", extra=self._ids(request, trace_id, err=str(exc)[:300]))
                if self._policy.escalation == "never":
                    return self._finish(start, self._status(request, "failed", "local_engine_failed"))
                decision = Decision(True, "local_engine_failed", {})
            else:
                metrics.INFERENCE.observe(completion.latency_ms / 1000)
                answer = LocalAnswer(completion.text, completion.mean_logprob, completion.finish_reason == "length")
                decision = after_inference(request, answer, self._policy)
        if not decision.escalate and completion is not None:
            result = self._local_result(request, completion, decision)
            if refused := await self._send(make(result, tenant=self.tenant, device=self.device, trace_id=trace_id)):
                return await self._reject(request, trace_id, start, refused)
            self.counters["local"] += 1
            return self._finish(start, result)
        return await self._escalate(request, completion, decision, trace_id, start)

    async def _complete(self, request: InferenceRequest, on_piece: Callable[[str], None] | None) -> Completion:
        complete: Any = self._engine.complete  # engines that stream take on_piece (LlamaCppEngine, Swappable)
        completion: Completion = await (complete(request, on_piece=on_piece) if on_piece else complete(request))
        self._tokens += completion.completion_tokens
        self._busy_s += completion.latency_ms / 1000
        self.counters["latency_ms_sum"] += completion.latency_ms
        return completion

    async def _send(self, envelope: Envelope[Any]) -> str | None:
        """Hand one message to the uplink; the refusal reason when the spool cannot take it, else None.

        `spool_full`: the spool holds its bound of must-arrive messages. `spool_io_error`: the spool's file
        cannot be written (a full disk, an I/O error): the message is not kept, so the caller refuses the work.
        """
        try:
            await self._uplink.send(envelope)
        except SpoolFullError as exc:
            log.warning("spool full: refusing work", extra={"msg_id": envelope.id, "err": str(exc), **self._who()})
            return SPOOL_FULL
        except sqlite3.OperationalError as exc:  # "database or disk is full"; "disk I/O error" (e.g. EFBIG)
            metrics.SPOOL_IO_ERRORS.inc()
            log.warning("spool write failed: refusing work", extra={"msg_id": envelope.id, "type": envelope.type,
                                                                  "err": str(exc)[:300], **self._who()})
            return SPOOL_IO_ERROR
        return None

    async def _reject(self, request: InferenceRequest, trace_id: str, start: float, reason: str) -> Outcome:
        """Refuse at once with a clear reply, published (best effort) so the fleet sees the refusal too."""
        result = self._status(request, "rejected", reason)
        self.counters["rejected"] += 1
        metrics.REJECTED.labels(reason).inc()
        if reason not in (SPOOL_FULL, SPOOL_IO_ERROR):  # the spool cannot take the reply either
            await self._send(make(result, tenant=self.tenant, device=self.device, trace_id=trace_id))
        return self._finish(start, result)

    async def _escalate(
        self, request: InferenceRequest, draft: Completion | None, decision: Decision, trace_id: str, start: float
    ) -> Outcome:
        metrics.ESCALATIONS.labels(decision.reason.split(":")[0]).inc()
        escalation = Escalation(
            request=request,
            reason=decision.reason,
            scores=decision.scores,
            draft=draft.text if draft else None,
            draft_model_id=draft.model_id if draft else None,
            draft_model_version=draft.model_version if draft else None,
        )
        async with self._slots:
            future: asyncio.Future[InferenceResult] = asyncio.get_running_loop().create_future()
            self._pending[request.request_id] = future
            metrics.PENDING.set(len(self._pending))
            try:
                envelope = make(escalation, tenant=self.tenant, device=self.device, trace_id=trace_id)
                if refused := await self._send(envelope):
                    return await self._reject(request, trace_id, start, refused)
                self.counters["escalated"] += 1
                log.info("escalated", extra=self._ids(request, trace_id, msg_id=envelope.id, reason=decision.reason))
                async with asyncio.timeout(self._reply_timeout_s):  # not wait_for: see edge.forward._publish
                    result = await future
            except TimeoutError:
                result = self._status(request, "failed", f"cloud_reply_timeout:{self._reply_timeout_s}s")
            finally:
                self._pending.pop(request.request_id, None)
                metrics.PENDING.set(len(self._pending))
        return self._finish(start, result, decision.reason)

    async def _read_downlink(self) -> None:
        async for message in self._mqtt.messages():
            self._on_downlink(message)

    def _on_downlink(self, message: MqttMessage) -> None:
        try:
            address = parse_mqtt(message.topic)
            envelope = decode(message.payload)
        except InvalidMessage as exc:
            metrics.BAD_DOWNLINK.labels(exc.reason.value).inc()
            log.warning("bad downlink message", extra={"topic": message.topic, "reason": exc.reason.value})
            return
        if (envelope.tenant, envelope.device) != (self.tenant, self.device) or not address.downlink:
            metrics.BAD_DOWNLINK.labels("topic_mismatch").inc()
            return
        if isinstance(envelope.data, InferenceResult):
            future = self._pending.get(envelope.data.request_id)
            if future is None or future.done():
                # A duplicate, or the reply to an escalation sent before a restart: nobody waits for it now.
                self.counters["late_replies"] += 1
                metrics.DUPLICATE_REPLIES.inc()
                log.info("reply with no waiter", extra={"msg_id": envelope.id, "request_id": envelope.data.request_id,
                                                        **self._who()})
                return
            self.counters["replies"] += 1
            log.info("cloud reply", extra={"msg_id": envelope.id, "request_id": envelope.data.request_id,
                                           "trace_id": envelope.trace_id, "status": envelope.data.status,
                                           "traceparent": trace.from_properties(message.user_properties),
                                           **self._who()})
            future.set_result(envelope.data)
        elif isinstance(envelope.data, ModelUpdate) and self._ota is not None:
            log.info("model update order", extra={"msg_id": envelope.id, "version": envelope.data.version,
                                                  **self._who()})
            self._ota.submit(envelope.data)
        else:
            log.info("downlink message", extra={"msg_id": envelope.id, "type": envelope.type, **self._who()})

    async def _telemetry_loop(self) -> None:
        while True:
            await asyncio.sleep(self._telemetry_interval_s)
            await self.publish_telemetry()

    async def publish_telemetry(self) -> None:
        """Publish one telemetry message: model, queue and spool depth, rates, RSS, CPU, counters."""
        await self._send(make(self.telemetry(), tenant=self.tenant, device=self.device))

    def telemetry(self) -> Telemetry:
        """A health snapshot; rates (tokens/s, CPU %) cover the time since the previous snapshot."""
        queue_depth = int(getattr(self._engine, "queue_depth", 0))
        spool = getattr(self._uplink, "spool", None)
        answered = self.counters["local"] + self.counters["escalated"]
        counters = {
            **self.counters,
            "pending_escalations": float(len(self._pending)),
            "tokens_per_s": round(self._rate.read(self._tokens, self._busy_s), 2),
            "escalation_rate": round(self.counters["escalated"] / answered, 4) if answered else 0.0,
            "rss_mb": round(rss_mb(), 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "cpu_pct": round(self._cpu.read(), 1),
        }
        counters |= {f"spool_{k}": float(v) for k, v in (spool.counters if spool else {}).items()}
        counters |= {f"uplink_{k}": float(v) for k, v in getattr(self._uplink, "counters", {}).items()}
        counters |= {k: float(v) for k, v in (self._ota.counters if self._ota else {}).items()}
        metrics.TOKENS_PER_S.set(counters["tokens_per_s"])
        metrics.QUEUE_DEPTH.set(queue_depth)
        metrics.RSS.set(counters["rss_mb"] * 1e6)
        return Telemetry(
            model_id=self._engine.model_id,
            model_version=self._engine.model_version,
            uptime_s=time.monotonic() - self._started,
            queue_depth=queue_depth,
            spool_depth=len(spool) if spool is not None else 0,
            counters=counters,
            canary=self._ota.canary if self._ota else False,
            model_update=self._ota.last_report if self._ota else None,
        )

    def _local_result(self, request: InferenceRequest, completion: Completion, decision: Decision) -> InferenceResult:
        return InferenceResult(
            request_id=request.request_id,
            route="local",
            text=completion.text,
            prompt=request.prompt,  # so the local answer can become a training record (ingest needs the prompt)
            model_id=completion.model_id,
            model_version=completion.model_version,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            latency_ms=completion.latency_ms,
            confidence=decision.confidence,
            reason=decision.reason,
            scores=decision.scores,
        )

    def _status(self, request: InferenceRequest, status: Any, reason: str) -> InferenceResult:
        return InferenceResult(
            request_id=request.request_id,
            route="local",
            status=status,
            model_id=self._engine.model_id,
            model_version=self._engine.model_version,
            latency_ms=0.0,
            reason=reason,
        )

    def _finish(self, start: float, result: InferenceResult, escalation_reason: str | None = None) -> Outcome:
        e2e_ms = (time.monotonic() - start) * 1000
        metrics.REQUESTS.labels(result.route, result.status).inc()
        metrics.E2E.labels(result.route).observe(e2e_ms / 1000)
        if result.status != "ok":
            self.counters["failed"] += 1
        return Outcome(result, e2e_ms, escalation_reason)

    def _who(self) -> dict[str, str]:
        return {"tenant": self.tenant, "device": self.device}

    def _ids(self, request: InferenceRequest, trace_id: str, **extra: str) -> dict[str, str]:
        return {"request_id": request.request_id, "trace_id": trace_id, **self._who(), **extra}
