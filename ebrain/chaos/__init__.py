"""Chaos runs: a workload through the whole local stack while a fault is injected, then a loss ledger.

Rooms (pure core first, thin adapters around it):

- `ledger`: the pure reconciliation. Every request id the devices sent lands in one bucket (answered,
  deferred, in_kafka, dead_lettered, refused, lost), duplicates counted; `recovery_s` computed. No I/O.
- `scenarios`: the registry (`SCENARIOS`, name -> `Scenario`). A scenario is data plus two steps,
  `inject(target)` and `clear(target)`, held apart by `duration_s`; `flow` says what recovery means for it.
- `proxy`: `FaultProxy`, a TCP proxy switchable to down / hang / http503 (Kafka, the model server, the
  devices' MQTT link all sit behind one).
- `services`: restartable handles on broker servers and `ebrain` child processes; the disk-full limit.
- `stack`: `ChaosStack`, the private stack (own Mosquitto, Tansu, Redis 8, llama.cpp server, gateway and
  cloud worker processes on free ports) and the scenarios' target.
- `fleet`: the devices process (real edge agents, paced requests); `evidence`: Kafka read back per tenant;
  `runner`: one run, timeline and result line; `table`: the README table; `cli`: `ebrain chaos ...`.

Reusing a scenario elsewhere (e.g. during the demo's fleet run): pass any object with the `Target`
protocol (ebrain.chaos.scenarios.Target) to the steps::

    from ebrain.chaos import SCENARIOS
    scenario = SCENARIOS["gateway-kill"]
    await scenario.inject(target)          # target.child("gateway").kill(), ...
    await asyncio.sleep(scenario.duration_s)
    await scenario.clear(target)           # target.child("gateway").start(), ...

`Target` offers `server(name)` (mqtt, kafka, redis, backend: start / stop / kill), `proxy(name)` (kafka,
backend, edge-mqtt: `set_mode`), `child(name)` (gateway, cloud, edge: start / stop / kill) and `edge_pid`.
A target without a given piece (the demo has no proxies) can only run the scenarios that do not need it;
`ChaosStack` has all of them, and `run_scenario(stack, scenario, RunConfig(...))` returns the result line.
"""

from typing import Any

__all__ = ["SCENARIOS", "Scenario", "Target"]


def __getattr__(name: str) -> Any:
    # Lazily, so `ebrain --help` (which imports ebrain.chaos.cli) stays fast.
    if name in __all__:
        from ebrain.chaos import scenarios  # noqa: PLC0415

        return getattr(scenarios, name)
    raise AttributeError(name)
