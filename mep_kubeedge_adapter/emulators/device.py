"""A simulated device that behaves like an MQTT mapper, for hardware-in-the-loop tests.

For one device it publishes, on the KubeEdge EventBus:

- `$hw/events/device/{id}/state/update` `online` when it connects and `offline` on a clean stop;
- `$hw/events/device/{id}/twin/update` with `actual` values (never `expected`) for all its
  properties, `rate` times per second, `event_id` empty like EdgeCore's own mapper reports;

and it follows desired values: on `…/twin/update/delta` it takes the desired value of each of
its properties, waits `apply_delay` seconds (an actuator is not instantaneous, so convergence
can be watched), then reports exactly the desired string and *holds* it from then on (the
property's generator is replaced by that constant).

Values always satisfy EdgeCore's rules: only `[a-zA-Z0-9-_.,:/@#]`, floats in plain decimal
notation (never `1e+05`), booleans `true`/`false`, ints without a sign `+`.

Property flag, repeatable: `--property NAME:TYPE:GENERATOR[:KEY=VALUE,...]`

    TYPE        int | float | boolean | string
    constant    value=V                                  (any type)
    randomwalk  min=A,max=B,step=S[,start=X][,seed=N]    (int, float)
    sine        period=SECONDS[,amplitude=A][,offset=O]  (int, float)
    csv         file=PATH[,column=NAME][,loop=true|false] (any type; column defaults to NAME;
                one row per report; at the end it starts over, or holds the last row)

    --property temperature:int:randomwalk:min=15,max=30,step=1
    --property humidity:float:sine:period=60,amplitude=10,offset=50
    --property open:boolean:constant:value=false

Spec file, `--spec FILE` (YAML), either one device:

    device: default/thermo-1
    rate: 2
    apply_delay: 0.5
    properties:
      - {name: temperature, type: int, generator: randomwalk, min: 15, max: 30, step: 1}

or the EdgeCore emulator's device file, where a twin's `simulate:` block holds the generator
(`temperature: {type: int, simulate: {generator: randomwalk, min: 15, max: 30, step: 1}}`)
and `--device` picks the device. Flags given on the command line win over the file; relative
CSV paths are relative to the spec file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import logging
import math
import random
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol, Self
from urllib.parse import urlsplit

import aiomqtt
import yaml

from mep_kubeedge_adapter.supervisor import being_cancelled, cancel_and_wait

__all__ = [
    "PropertySpec",
    "SimulatedDevice",
    "SimulationSpec",
    "add_arguments",
    "format_number",
    "load_spec",
    "parse_property",
    "run",
]

logger = logging.getLogger(__name__)

TopicLayout = Literal["namespaced", "legacy"]
PropertyType = Literal["int", "float", "boolean", "string"]
PROPERTY_TYPES: tuple[PropertyType, ...] = ("int", "float", "boolean", "string")
GENERATORS = ("constant", "randomwalk", "sine", "csv")
_NUMERIC_ONLY = {"randomwalk", "sine"}
_VALUE_RE = re.compile(r"^[a-zA-Z0-9\-_.,:/@#]{1,512}$")
_INT_RE = re.compile(r"^-?[0-9]+$")
_FLOAT_RE = re.compile(r"^-?([0-9]+\.?[0-9]*|\.[0-9]+)$")


def format_number(value: float, property_type: PropertyType, precision: int = 2) -> str:
    """A number as a twin value EdgeCore accepts: no exponent, no `+`, no `-0`."""
    if property_type == "int":
        text = str(round(value))
    else:
        text = f"{value:.{precision}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def normalise_value(raw: object, property_type: PropertyType, where: str) -> str:
    """Check and canonicalise a given value (constant, CSV cell, desired value)."""
    text = ("true" if raw else "false") if isinstance(raw, bool) else str(raw).strip()
    if property_type == "int":
        if not _INT_RE.match(text.lstrip("+")):
            raise ValueError(f"{where}: {text!r} is not an int")
        return str(int(text))
    if property_type == "float":
        if not _FLOAT_RE.match(text.lstrip("+")):
            raise ValueError(f"{where}: {text!r} is not a plain decimal float")
        return text.lstrip("+")
    if property_type == "boolean":
        if text.lower() not in ("true", "false"):
            raise ValueError(f"{where}: {text!r} is not true/false")
        return text.lower()
    if not _VALUE_RE.match(text):
        raise ValueError(f"{where}: {text!r} has characters EdgeCore refuses (or is empty)")
    return text


# --------------------------------------------------------------------------------------------
# Specs


@dataclass(frozen=True)
class PropertySpec:
    """One simulated property: its twin type, generator and generator parameters."""

    name: str
    type: PropertyType
    generator: str
    params: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in PROPERTY_TYPES:
            raise ValueError(f"{self.name}: type must be one of {PROPERTY_TYPES}")
        if self.generator not in GENERATORS:
            raise ValueError(f"{self.name}: generator must be one of {GENERATORS}")
        if self.generator in _NUMERIC_ONLY and self.type not in ("int", "float"):
            raise ValueError(f"{self.name}: {self.generator} needs an int or float property")


@dataclass
class SimulationSpec:
    """What a spec file says; unset fields fall back to flags or defaults."""

    device_id: str | None = None
    rate: float | None = None
    apply_delay: float | None = None
    properties: list[PropertySpec] = field(default_factory=list)


def parse_property(text: str, base_dir: Path | None = None) -> PropertySpec:
    """Parse `NAME:TYPE:GENERATOR[:KEY=VALUE,...]` (see the module docstring)."""
    parts = text.split(":", 3)
    if len(parts) < 3:
        raise ValueError(f"--property {text!r}: expected NAME:TYPE:GENERATOR[:KEY=VALUE,...]")
    name, property_type, generator = parts[0], parts[1], parts[2]
    params: dict[str, str] = {}
    if len(parts) == 4 and parts[3]:
        for item in parts[3].split(","):
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f"--property {text!r}: parameter {item!r} is not KEY=VALUE")
            params[key.strip()] = value.strip()
    return _property(name, property_type, generator, params, base_dir)


def _property(
    name: str,
    property_type: str,
    generator: str,
    params: Mapping[str, object],
    base_dir: Path | None,
) -> PropertySpec:
    texts = {key: _param_text(value) for key, value in params.items()}
    if generator == "csv" and "file" in texts and base_dir is not None:
        texts["file"] = str(base_dir / texts["file"])
    if property_type not in PROPERTY_TYPES:
        raise ValueError(f"{name}: type must be one of {PROPERTY_TYPES}, not {property_type!r}")
    spec = PropertySpec(name, property_type, generator, texts)
    build_source(spec)  # fail early on bad parameters
    return spec


def _param_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load_spec(path: str | Path, device_id: str | None = None) -> SimulationSpec:
    """Read a single-device spec file or pick `device_id` from an emulator device file."""
    path = Path(path)
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(document, Mapping):
        raise ValueError(f"{path}: expected a mapping")
    base_dir = path.parent
    if "devices" in document:
        return _spec_from_device_file(path, document["devices"], device_id, base_dir)
    spec = SimulationSpec(
        device_id=document.get("device"),
        rate=document.get("rate"),
        apply_delay=document.get("apply_delay"),
    )
    for index, entry in enumerate(document.get("properties") or []):
        if not isinstance(entry, Mapping):
            raise ValueError(f"{path}: properties[{index}] must be a mapping")
        params = {k: v for k, v in entry.items() if k not in ("name", "type", "generator")}
        spec.properties.append(
            _property(
                str(entry.get("name")),
                str(entry.get("type")),
                str(entry.get("generator")),
                params,
                base_dir,
            )
        )
    return spec


def _spec_from_device_file(
    path: Path, devices: object, device_id: str | None, base_dir: Path
) -> SimulationSpec:
    if not isinstance(devices, list):
        raise ValueError(f"{path}: 'devices' must be a list")
    if device_id is None:
        raise ValueError(f"{path}: a device file needs --device to pick the device")
    for entry in devices:
        if not isinstance(entry, Mapping):
            continue
        namespace, name = entry.get("namespace", "default"), entry.get("name")
        if device_id not in (f"{namespace}/{name}", name):
            continue
        spec = SimulationSpec(device_id=device_id)
        simulation = entry.get("simulate") or {}
        if isinstance(simulation, Mapping):
            spec.rate = simulation.get("rate")
            spec.apply_delay = simulation.get("apply_delay")
        for key, twin in (entry.get("twins") or {}).items():
            block = twin.get("simulate") if isinstance(twin, Mapping) else None
            if not isinstance(block, Mapping):
                continue
            params = {k: v for k, v in block.items() if k != "generator"}
            property_type = str(twin.get("type", "string"))
            spec.properties.append(
                _property(key, property_type, str(block.get("generator")), params, base_dir)
            )
        return spec
    raise ValueError(f"{path}: no device {device_id!r}")


# --------------------------------------------------------------------------------------------
# Value sources


class ValueSource(Protocol):
    def next(self, elapsed: float) -> str:
        """The value to report now; `elapsed` is seconds since the device started."""
        ...


def _number(spec: PropertySpec, key: str, default: float | None = None) -> float:
    raw = spec.params.get(key)
    if raw is None:
        if default is None:
            raise ValueError(f"{spec.name}: {spec.generator} needs {key}=")
        return default
    try:
        number = float(raw)
    except ValueError:
        raise ValueError(f"{spec.name}: {key}={raw!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{spec.name}: {key} must be finite")
    return number


@dataclass
class ConstantSource:
    value: str

    def next(self, elapsed: float) -> str:
        return self.value


@dataclass
class RandomWalkSource:
    """Bounded random walk: each report moves by at most `step` (ints by whole steps)."""

    property_type: PropertyType
    low: float
    high: float
    step: float
    current: float
    rng: random.Random
    precision: int = 2

    def next(self, elapsed: float) -> str:
        if self.property_type == "int":
            move = float(self.rng.randint(-round(self.step), round(self.step)))
        else:
            move = self.rng.uniform(-self.step, self.step)
        self.current = min(self.high, max(self.low, self.current + move))
        return format_number(self.current, self.property_type, self.precision)


@dataclass
class SineSource:
    property_type: PropertyType
    period: float
    amplitude: float
    offset: float
    precision: int = 2

    def next(self, elapsed: float) -> str:
        value = self.offset + self.amplitude * math.sin(2 * math.pi * elapsed / self.period)
        return format_number(value, self.property_type, self.precision)


@dataclass
class CsvSource:
    """Replays one column of a CSV file, one row per report."""

    rows: list[str]
    loop: bool = True
    index: int = 0

    def next(self, elapsed: float) -> str:
        value = self.rows[min(self.index, len(self.rows) - 1)]
        self.index += 1
        if self.loop and self.index >= len(self.rows):
            self.index = 0
        return value


def build_source(spec: PropertySpec, precision: int = 2) -> ValueSource:
    """The value source a spec describes; raises ValueError with the reason if it is wrong."""
    if spec.generator == "constant":
        if "value" not in spec.params:
            raise ValueError(f"{spec.name}: constant needs value=")
        return ConstantSource(normalise_value(spec.params["value"], spec.type, spec.name))
    if spec.generator == "randomwalk":
        low, high, step = _number(spec, "min"), _number(spec, "max"), _number(spec, "step")
        if low > high or step <= 0:
            raise ValueError(f"{spec.name}: randomwalk needs min <= max and step > 0")
        start = _number(spec, "start", (low + high) / 2)
        seed = spec.params.get("seed")
        rng = random.Random(int(seed)) if seed is not None else random.Random()
        if spec.type == "int":
            start = float(round(start))
        return RandomWalkSource(spec.type, low, high, step, start, rng, precision)
    if spec.generator == "sine":
        period = _number(spec, "period")
        if period <= 0:
            raise ValueError(f"{spec.name}: sine needs period > 0")
        amplitude, offset = _number(spec, "amplitude", 1.0), _number(spec, "offset", 0.0)
        return SineSource(spec.type, period, amplitude, offset, precision)
    file = spec.params.get("file")
    if not file:
        raise ValueError(f"{spec.name}: csv needs file=")
    column = spec.params.get("column", spec.name)
    with Path(file).open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise ValueError(f"{spec.name}: {file} has no column {column!r}")
        rows = [
            normalise_value(row[column], spec.type, f"{file}:{line}:{column}")
            for line, row in enumerate(reader, start=2)
        ]
    if not rows:
        raise ValueError(f"{spec.name}: {file} has no rows")
    loop = spec.params.get("loop", "true").lower() != "false"
    return CsvSource(rows, loop)


# --------------------------------------------------------------------------------------------
# The device


def _ms() -> int:
    return time.time_ns() // 1_000_000


class SimulatedDevice:
    """A mapper-like MQTT client for one device (async context manager).

    Entering connects (and reconnects on its own if the broker goes away), publishes
    `online` and starts reporting; leaving publishes `offline` and disconnects. `values` holds
    the last reported value per property; `wait_for_value()` lets tests await convergence.
    """

    def __init__(
        self,
        host: str,
        port: int,
        device_id: str,
        properties: Iterable[PropertySpec],
        *,
        rate: float = 1.0,
        apply_delay: float = 0.0,
        topic_layout: TopicLayout = "namespaced",
        username: str | None = None,
        password: str | None = None,
        precision: int = 2,
        reconnect_interval: float = 1.0,
        ready_timeout: float = 10.0,
    ) -> None:
        levels = device_id.split("/")
        expected_levels = 2 if topic_layout == "namespaced" else 1
        if len(levels) != expected_levels or not all(levels):
            form = "<namespace>/<name>" if topic_layout == "namespaced" else "<name>"
            raise ValueError(f"device id {device_id!r} must be {form} for {topic_layout} topics")
        if rate <= 0:
            raise ValueError("rate must be > 0 reports per second")
        self.host, self.port = host, port
        self.device_id = device_id
        self.specs = {spec.name: spec for spec in properties}
        if not self.specs:
            raise ValueError("a simulated device needs at least one property")
        self.rate = rate
        self.apply_delay = apply_delay
        self._username, self._password = username, password
        self._reconnect_interval = reconnect_interval
        self._ready_timeout = ready_timeout
        self._sources: dict[str, ValueSource] = {
            name: build_source(spec, precision) for name, spec in self.specs.items()
        }
        self._values: dict[str, str] = {}
        self.applied: dict[str, str] = {}
        self.reports_published = 0
        self._changed = asyncio.Condition()
        self._connected = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._report_task: asyncio.Task[None] | None = None
        self._pending: dict[str, tuple[str, asyncio.Task[None]]] = {}
        self._started = time.monotonic()
        self._topic = f"$hw/events/device/{device_id}"

    @property
    def values(self) -> dict[str, str]:
        """The last reported value of each property (a copy)."""
        return dict(self._values)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._serve(), name=f"simulated-device {self.device_id}")
        try:
            async with asyncio.timeout(self._ready_timeout):
                await self._connected.wait()
        except BaseException:
            await cancel_and_wait(self._task)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop reporting, publish `offline` if still connected, then disconnect."""
        await cancel_and_wait(self._report_task)
        for _, task in self._pending.values():
            await cancel_and_wait(task)
        self._pending.clear()
        client = self._client
        if client is not None and self._connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError):
                await self._publish_state(client, "offline")
        await cancel_and_wait(self._task)
        self._task = None

    async def wait_for_value(self, name: str, value: str, timeout: float = 10.0) -> None:
        """Wait until `name` was reported as `value` (raises `TimeoutError`)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self._values.get(name) == value)

    async def report_now(self) -> None:
        """Publish one report immediately (besides the periodic ones)."""
        client = self._client
        if client is not None:
            await self._report(client, self._next_values())

    # -- internals -----------------------------------------------------------------------

    async def _serve(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.host, self.port, username=self._username, password=self._password
                ) as client:
                    await client.subscribe(f"{self._topic}/twin/update/delta", qos=1)
                    await self._publish_state(client, "online")
                    self._client = client
                    self._connected.set()
                    self._report_task = asyncio.create_task(self._report_loop(client))
                    try:
                        async for message in client.messages:
                            self._on_delta(message)
                    finally:
                        await cancel_and_wait(self._report_task)
            except aiomqtt.MqttError as exc:
                if being_cancelled():
                    raise asyncio.CancelledError from exc
                logger.warning("simulated device %s lost the broker: %s", self.device_id, exc)
            finally:
                self._connected.clear()
                self._client = None
            await asyncio.sleep(self._reconnect_interval)

    async def _publish_state(self, client: aiomqtt.Client, state: str) -> None:
        body = {"event_id": "", "timestamp": _ms(), "state": state}
        await client.publish(f"{self._topic}/state/update", json.dumps(body), qos=1)

    def _next_values(self) -> dict[str, str]:
        elapsed = time.monotonic() - self._started
        return {name: source.next(elapsed) for name, source in self._sources.items()}

    async def _report(self, client: aiomqtt.Client, values: Mapping[str, str]) -> None:
        twin = {
            name: {"actual": {"value": value}, "metadata": {"type": self.specs[name].type}}
            for name, value in values.items()
        }
        body = {"event_id": "", "timestamp": _ms(), "twin": twin}
        await client.publish(f"{self._topic}/twin/update", json.dumps(body), qos=1)
        self.reports_published += 1
        async with self._changed:
            self._values.update(values)
            self._changed.notify_all()

    async def _report_loop(self, client: aiomqtt.Client) -> None:
        period = 1.0 / self.rate
        next_at = time.monotonic()
        try:
            while True:
                await self._report(client, self._next_values())
                next_at += period
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        except aiomqtt.MqttError as exc:
            logger.debug("simulated device %s stopped reporting: %s", self.device_id, exc)

    def _on_delta(self, message: aiomqtt.Message) -> None:
        try:
            body = json.loads(message.payload if isinstance(message.payload, bytes) else b"")
            delta = body.get("delta") if isinstance(body, dict) else None
        except ValueError:
            delta = None
        if not isinstance(delta, dict):
            logger.warning("simulated device %s: unreadable delta ignored", self.device_id)
            return
        for name, desired in delta.items():
            spec = self.specs.get(name)
            if spec is None or not isinstance(desired, str):
                continue
            pending = self._pending.get(name)
            if pending is not None and pending[0] == desired:
                continue
            if pending is None and self.applied.get(name) == desired:
                continue
            try:
                normalise_value(desired, spec.type, name)
                if spec.type == "boolean" and desired not in ("true", "false"):
                    raise ValueError(f"{name}: {desired!r} is not true/false")
            except ValueError as exc:
                logger.warning(
                    "simulated device %s: desired value refused: %s", self.device_id, exc
                )
                continue
            if pending is not None:
                pending[1].cancel()
            # The desired string itself is reported: EdgeCore compares strings ("22" != "22.0").
            task = asyncio.create_task(self._apply(name, desired))
            self._pending[name] = (desired, task)

    async def _apply(self, name: str, desired: str) -> None:
        if self.apply_delay > 0:
            await asyncio.sleep(self.apply_delay)
        self._sources[name] = ConstantSource(desired)
        self.applied[name] = desired
        self._pending.pop(name, None)
        logger.debug("simulated device %s applied %s=%s", self.device_id, name, desired)
        client = self._client
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._report(client, {name: desired})


# --------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the `simulate-device` command (formats in the module docstring)."""
    parser.description = (parser.description or "") + (
        " Properties: --property NAME:TYPE:GENERATOR[:KEY=VALUE,...] with TYPE int|float|"
        "boolean|string and GENERATOR constant(value=) | randomwalk(min=,max=,step=[,start=]"
        "[,seed=]) | sine(period=[,amplitude=][,offset=]) | csv(file=[,column=][,loop=])."
    )
    parser.add_argument(
        "--mqtt-url",
        default="mqtt://127.0.0.1:1883",
        help="EventBus broker, mqtt://[user:password@]host:port (default: %(default)s)",
    )
    parser.add_argument(
        "--device",
        metavar="ID",
        help="device id: <namespace>/<name> (namespaced layout) or <name> (legacy layout)",
    )
    parser.add_argument(
        "--property",
        dest="properties",
        metavar="NAME:TYPE:GENERATOR[:K=V,...]",
        action="append",
        default=[],
        help="a simulated property, repeatable, e.g. temperature:int:randomwalk:min=15,max=30,step=1",
    )
    parser.add_argument(
        "--spec",
        metavar="FILE",
        type=Path,
        help="YAML spec: one device with 'properties', or a device file with 'simulate' blocks",
    )
    parser.add_argument("--rate", type=float, help="reports per second (default 1)")
    parser.add_argument(
        "--apply-delay",
        type=float,
        help="seconds between receiving a desired value and reporting it (default 0)",
    )
    parser.add_argument(
        "--topic-layout",
        choices=("namespaced", "legacy"),
        default="namespaced",
        help="namespaced: <ns>/<name> ids (KubeEdge v1.17+); legacy: <name> ids (<= v1.15)",
    )


def _broker_address(url: str) -> tuple[str, int, str | None, str | None]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp"):
        raise ValueError(f"unsupported MQTT URL {url!r}: use mqtt://host:port")
    return parts.hostname or "127.0.0.1", parts.port or 1883, parts.username, parts.password


def _settings(args: argparse.Namespace) -> tuple[str, list[PropertySpec], float, float]:
    spec = load_spec(args.spec, args.device) if args.spec else SimulationSpec()
    device_id = args.device or spec.device_id
    if not device_id:
        raise ValueError("--device is required (or 'device:' in the spec file)")
    properties = {prop.name: prop for prop in spec.properties}
    for text in args.properties:
        prop = parse_property(text)
        properties[prop.name] = prop
    rate = args.rate if args.rate is not None else (spec.rate or 1.0)
    apply_delay = args.apply_delay if args.apply_delay is not None else (spec.apply_delay or 0.0)
    return device_id, list(properties.values()), float(rate), float(apply_delay)


async def run(args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Simulate until `stop` is set, then publish `offline` and disconnect."""
    host, port, username, password = _broker_address(args.mqtt_url)
    device_id, properties, rate, apply_delay = _settings(args)
    async with SimulatedDevice(
        host,
        port,
        device_id,
        properties,
        rate=rate,
        apply_delay=apply_delay,
        topic_layout=args.topic_layout,
        username=username,
        password=password,
    ):
        logger.info(
            "simulating %s (%s) at %.3g Hz",
            device_id,
            ", ".join(prop.name for prop in properties),
            rate,
        )
        await stop.wait()
