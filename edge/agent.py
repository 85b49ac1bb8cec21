"""The edge agent: draft locally, publish every inference, escalate per policy, await the cloud's reply."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Self

from ebrain.inference import Completion, Engine, EngineOverloaded, EngineUnavailable
from ebrain.mqtt import MqttClient, MqttMessage
from edge import metrics
from edge.core.policy import Decision, LocalAnswer, PolicyConfig, after_inference, before_inference
from edge.uplink import Uplink
from schemas import (
    Escalation,
    InferenceRequest,
    InferenceResult,
    InvalidMessage,
    Telemetry,
    decode,
    make,
    new_trace_id,
)
from schemas.topics import mqtt_downlink_filter, parse_mqtt

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The final answer to one request and how long the device waited for it."""

    result: InferenceResult
    e2e_ms: float
    escalation_reason: str | None = None


class EdgeAgent:
    """Owns the downlink reader and telemetry tasks; `handle` answers one request end to end."""

    def __init__(
        self,
        *,
        tenant: str,
        device: str,
        engine: Engine,
        mqtt: MqttClient,
        uplink: Uplink,
        policy: PolicyConfig,
        max_pending: int = 64,
        reply_timeout_s: float = 120.0,
        telemetry_interval_s: float = 30.0,
    ) -> None:
        self.tenant, self.device = tenant, device
        self._engine, self._mqtt, self._uplink, self._policy = engine, mqtt, uplink, policy
        self._reply_timeout_s = reply_timeout_s
        self._telemetry_interval_s = telemetry_interval_s
        self._slots = asyncio.Semaphore(max_pending)
        self._pending: dict[str, asyncio.Future[InferenceResult]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._started = time.monotonic()
        self.counters: dict[str, float] = {"local": 0, "escalated": 0, "replies": 0, "failed": 0}

    async def __aenter__(self) -> Self:
        if not self._tasks:
            await self._mqtt.subscribe(mqtt_downlink_filter(self.tenant, self.device), qos=1)
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
        for future in self._pending.values():
            future.cancel()

    async def handle(self, request: InferenceRequest) -> Outcome:
        """Answer `request`: locally when the policy trusts the draft, else via the cloud."""
        start = time.monotonic()
        trace_id = new_trace_id()
        decision = before_inference(request, self._policy)
        completion: Completion | None = None
        if decision is None:
            try:
                completion = await self._engine.complete(request)
            except EngineOverloaded:
                return self._finish(start, self._status(request, "rejected", "local_queue_full"))
            except EngineUnavailable as exc:
                log.warning("local engine failed, escalating", extra=self._ids(request, trace_id, err=str(exc)))
                decision = Decision(True, "local_engine_failed", {})
            else:
                metrics.INFERENCE.observe(completion.latency_ms / 1000)
                answer = LocalAnswer(completion.text, completion.mean_logprob, completion.finish_reason == "length")
                decision = after_inference(request, answer, self._policy)
        if not decision.escalate and completion is not None:
            result = self._local_result(request, completion, decision)
            await self._uplink.send(make(result, tenant=self.tenant, device=self.device, trace_id=trace_id))
            self.counters["local"] += 1
            return self._finish(start, result)
        return await self._escalate(request, completion, decision, trace_id, start)

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
                await self._uplink.send(envelope)
                self.counters["escalated"] += 1
                log.info("escalated", extra=self._ids(request, trace_id, msg_id=envelope.id, reason=decision.reason))
                result = await asyncio.wait_for(future, self._reply_timeout_s)
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
                metrics.DUPLICATE_REPLIES.inc()
                return
            self.counters["replies"] += 1
            future.set_result(envelope.data)
        else:
            log.info("downlink message", extra={"msg_id": envelope.id, "type": envelope.type, **self._who()})

    async def _telemetry_loop(self) -> None:
        while True:
            await asyncio.sleep(self._telemetry_interval_s)
            await self.publish_telemetry()

    async def publish_telemetry(self) -> None:
        """Publish one telemetry message (model version, pending escalations, counters)."""
        payload = Telemetry(
            model_id=self._engine.model_id,
            model_version=self._engine.model_version,
            uptime_s=time.monotonic() - self._started,
            queue_depth=len(self._pending),
            counters=dict(self.counters),
        )
        await self._uplink.send(make(payload, tenant=self.tenant, device=self.device))

    def _local_result(self, request: InferenceRequest, completion: Completion, decision: Decision) -> InferenceResult:
        return InferenceResult(
            request_id=request.request_id,
            route="local",
            text=completion.text,
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
