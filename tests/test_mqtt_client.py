"""MqttClient against the real Mosquitto: QoS 1 round trip, manual ack, backpressure, reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ebrain.config import MqttSettings
from ebrain.mqtt import MqttClient, MqttConnectError, MqttMessage, MqttQueueFullError
from ebrain.stack import private

pytestmark = pytest.mark.integration


def _uid() -> str:
    return uuid.uuid4().hex[:12]


async def _next(client: MqttClient, within: float = 5.0) -> MqttMessage:
    async def first() -> MqttMessage:
        async for message in client.messages():
            return message
        raise AssertionError("message stream ended")

    return await asyncio.wait_for(first(), within)


async def _nothing_within(client: MqttClient, seconds: float) -> bool:
    try:
        await _next(client, seconds)
    except TimeoutError:
        return True
    return False


async def test_qos1_round_trip_keeps_order_and_user_properties(mqtt_settings: MqttSettings) -> None:
    topic = f"test/{_uid()}/round-trip"
    async with (
        MqttClient(mqtt_settings, client_id=f"sub-{_uid()}", clean_start=True) as sub,
        MqttClient(mqtt_settings, client_id=f"pub-{_uid()}", clean_start=True) as pub,
    ):
        assert sub.connected
        await sub.subscribe(topic, qos=1)
        for i in range(50):
            await pub.publish(topic, f"m{i}".encode(), qos=1, user_properties=[("seq", str(i))])
        got = [await _next(sub) for _ in range(50)]
    assert [m.payload for m in got] == [f"m{i}".encode() for i in range(50)]
    assert all(m.qos == 1 and m.topic == topic for m in got)
    assert got[7].user_properties == (("seq", "7"),)


async def test_unacked_message_is_redelivered_and_acked_one_is_not(mqtt_settings: MqttSettings) -> None:
    settings = mqtt_settings.model_copy(update={"session_expiry_s": 60})
    topic, client_id = f"test/{_uid()}/ack", f"sub-{_uid()}"
    async with MqttClient(settings, client_id=client_id, clean_start=True, manual_ack=True) as sub:
        await sub.subscribe(topic)
        async with MqttClient(settings, client_id=f"pub-{_uid()}", clean_start=True) as pub:
            await pub.publish(topic, b"first")
        first = await _next(sub)
        assert first.payload == b"first"  # not acked: the broker still owes it to this session

    async with MqttClient(settings, client_id=client_id, manual_ack=True) as sub:
        again = await _next(sub)
        assert again.payload == b"first"
        sub.ack(again)
        async with MqttClient(settings, client_id=f"pub-{_uid()}", clean_start=True) as pub:
            await pub.publish(topic, b"marker")
        marker = await _next(sub)
        assert marker.payload == b"marker"
        sub.ack(marker)

    # Acked messages are not redelivered on the next session: the next message is a fresh one.
    async with MqttClient(settings, client_id=client_id, manual_ack=True) as sub:
        async with MqttClient(settings, client_id=f"pub-{_uid()}", clean_start=True) as pub:
            await pub.publish(topic, b"second")
        assert (await _next(sub)).payload == b"second"
    # Leave no session behind on the shared broker.
    async with MqttClient(
        mqtt_settings.model_copy(update={"session_expiry_s": 0}), client_id=client_id, clean_start=True
    ):
        pass


async def test_acks_batched_in_one_loop_iteration_all_reach_the_broker(mqtt_settings: MqttSettings) -> None:
    """Acks made in one event-loop iteration leave as one buffer: every one must count, none may be extra."""
    settings = mqtt_settings.model_copy(update={"session_expiry_s": 60})
    topic, client_id = f"test/{_uid()}/batch-ack", f"sub-{_uid()}"
    async with MqttClient(settings, client_id=client_id, clean_start=True, manual_ack=True) as sub:
        await sub.subscribe(topic)
        async with MqttClient(settings, client_id=f"pub-{_uid()}", clean_start=True) as pub:
            await asyncio.gather(*(pub.publish(topic, str(i).encode()) for i in range(300)))
        got = [await _next(sub) for _ in range(300)]
        for m in got[:200]:  # no await in between: one batch
            sub.ack(m)
        await asyncio.sleep(0)  # let the batch go before stop() (stop flushes too; this is the normal path)
    assert sorted(int(m.payload) for m in got) == list(range(300))

    # The 200 acked ones are gone from the session; exactly the 100 others come back, in order.
    async with MqttClient(settings, client_id=client_id, manual_ack=True) as sub:
        again = [await _next(sub) for _ in range(100)]
        for m in again:
            sub.ack(m)
        assert await _nothing_within(sub, 0.5)
    assert [m.payload for m in again] == [m.payload for m in got[200:]]
    async with MqttClient(
        mqtt_settings.model_copy(update={"session_expiry_s": 0}), client_id=client_id, clean_start=True
    ):
        pass


async def test_receive_maximum_bounds_unacked_messages(mqtt_settings: MqttSettings) -> None:
    settings = mqtt_settings.model_copy(update={"session_expiry_s": 0})
    topic = f"test/{_uid()}/backpressure"
    async with (
        MqttClient(
            settings, client_id=f"sub-{_uid()}", clean_start=True, manual_ack=True, max_queued_incoming=5
        ) as sub,
        MqttClient(settings, client_id=f"pub-{_uid()}", clean_start=True) as pub,
    ):
        await sub.subscribe(topic)
        for i in range(12):
            await pub.publish(topic, str(i).encode())
        first = [await _next(sub) for _ in range(5)]
        assert await _nothing_within(sub, 0.5), "broker sent more than Receive Maximum unacked messages"
        for m in first:
            sub.ack(m)
        rest = [await _next(sub) for _ in range(7)]
        for m in rest:
            sub.ack(m)
    assert [int(m.payload) for m in first + rest] == list(range(12))


async def test_connect_to_dead_port_raises_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = MqttClient(MqttSettings(port=port), client_id=f"x-{_uid()}", connect_timeout_s=3)
    with pytest.raises(MqttConnectError, match=str(port)):
        await client.start()
    await client.stop()  # idempotent


class _Proxy:
    """A TCP proxy to Mosquitto that a test can cut, to force disconnects and reconnects."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def proxy(mqtt_settings: MqttSettings) -> AsyncIterator[_Proxy]:
    p = _Proxy(mqtt_settings.port)
    await p.open()
    yield p
    with contextlib.suppress(Exception):
        await p.cut()


async def test_reconnect_resubscribes_and_flushes_queued_publishes(mqtt_settings: MqttSettings, proxy: _Proxy) -> None:
    via_proxy = mqtt_settings.model_copy(update={"port": proxy.port, "session_expiry_s": 0})
    topic = f"test/{_uid()}/reconnect"
    async with (
        MqttClient(via_proxy, client_id=f"flaky-{_uid()}", max_queued_outgoing=3) as flaky,
        MqttClient(mqtt_settings, client_id=f"obs-{_uid()}", clean_start=True) as observer,
    ):
        await flaky.subscribe(topic)
        await observer.subscribe(topic)
        await proxy.cut()
        for _ in range(250):  # paho notices the cut within a few ms
            if not flaky.connected:
                break
            await asyncio.sleep(0.02)
        assert not flaky.connected

        queued = [asyncio.create_task(flaky.publish(topic, f"q{i}".encode())) for i in range(3)]
        await asyncio.sleep(0)  # let the three tasks hand their messages to paho
        with pytest.raises(MqttQueueFullError):
            await flaky.publish(topic, b"overflow")

        await proxy.open()  # same port: paho's reconnect loop finds it
        await flaky.wait_connected(timeout=10)
        await asyncio.wait_for(asyncio.gather(*queued), 10)
        seen = sorted([(await _next(observer)).payload for _ in range(3)])
        assert seen == [b"q0", b"q1", b"q2"]
        # Renewed subscription: a message published now reaches the reconnected client.
        await observer.publish(topic, b"after")
        payloads = {(await _next(flaky)).payload for _ in range(4)}
        assert b"after" in payloads


@pytest.fixture
def private_mqtt(tmp_path: Path) -> Iterator[MqttSettings]:
    """A broker of the test's own whose session queue is bounded by bytes: the machine's Mosquitto keeps 1000
    queued messages per session and silently drops QoS 1 beyond that (the broker's loss, not the client's)."""
    port = private.free_port()
    proc = private.start_mosquitto(tmp_path, port)
    yield MqttSettings(host="127.0.0.1", port=port)
    private.stop(proc)


async def test_no_message_is_lost_when_the_broker_overshoots_receive_maximum(private_mqtt: MqttSettings) -> None:
    # Mosquitto 2.0 sends more than Receive Maximum when acks come in batches; the queue must hold firm.
    settings = private_mqtt.model_copy(update={"session_expiry_s": 0})
    topic, n, window = f"test/{_uid()}/overshoot", 3000, 100
    async with (
        MqttClient(
            settings, client_id=f"sub-{_uid()}", clean_start=True, manual_ack=True, max_queued_incoming=window
        ) as sub,
        MqttClient(settings, client_id=f"pub-{_uid()}", clean_start=True) as pub,
    ):
        await sub.subscribe(topic)
        publishing = asyncio.gather(*(pub.publish(topic, str(i).encode()) for i in range(n)))
        got: list[int] = []
        held: list[MqttMessage] = []

        async def consume() -> None:
            async for message in sub.messages():
                assert sub.queued_incoming <= window
                got.append(int(message.payload))
                held.append(message)
                if len(held) > window // 2 or len(got) == n:
                    await asyncio.sleep(0.001)  # a slow batch of work, then ack it all
                    for m in held:
                        sub.ack(m)
                    held.clear()
                if len(got) == n:
                    return

        await asyncio.wait_for(consume(), 30)
        await publishing
    assert got == list(range(n))
