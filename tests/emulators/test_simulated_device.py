"""Simulated device: reports, follows desired values, says offline on a clean stop."""

from __future__ import annotations

import argparse
import asyncio
import re
from pathlib import Path

import pytest

from mep_kubeedge_adapter.emulators import device as device_module
from mep_kubeedge_adapter.emulators.broker import MosquittoBroker
from mep_kubeedge_adapter.emulators.device import (
    PropertySpec,
    SimulatedDevice,
    format_number,
    load_spec,
    parse_property,
)
from mep_kubeedge_adapter.emulators.edgecore import EdgeCoreEmulator, load_devices

from .conftest import MqttProbe

PUMP = "$hw/events/device/default/pump-1"
EDGECORE_VALUE = re.compile(r"^[a-zA-Z0-9\-_.,:/@#]{1,512}$")
DEMO_DEVICES = Path(__file__).parents[2] / "mep_kubeedge_adapter" / "demo_devices.yaml"


def speed(value: str = "1000") -> PropertySpec:
    return parse_property(f"speed:int:constant:value={value}")


async def test_reports_actual_values_and_state(broker: MosquittoBroker, probe: MqttProbe) -> None:
    properties = [
        speed(),
        parse_property("flow:float:randomwalk:min=0,max=1e6,step=12345.678,seed=3"),
        parse_property("phase:float:sine:period=0.3,amplitude=2.5"),
    ]
    async with SimulatedDevice(broker.host, broker.port, "default/pump-1", properties, rate=50):
        state = await probe.wait_for(f"{PUMP}/state/update")
        assert state["state"] == "online"
        for _ in range(5):
            report = await probe.wait_for(f"{PUMP}/twin/update")
            assert report["event_id"] == ""
            assert isinstance(report["timestamp"], int)
            assert report["twin"]["speed"] == {
                "actual": {"value": "1000"},
                "metadata": {"type": "int"},
            }
            for name, entry in report["twin"].items():
                assert set(entry) == {"actual", "metadata"}, name
                assert EDGECORE_VALUE.match(entry["actual"]["value"]), entry
            assert 0 <= float(report["twin"]["flow"]["actual"]["value"]) <= 1e6
    offline = await probe.wait_for(f"{PUMP}/state/update")
    assert offline["state"] == "offline"


async def test_applies_desired_value_from_delta(broker: MosquittoBroker, probe: MqttProbe) -> None:
    async with SimulatedDevice(
        broker.host, broker.port, "default/pump-1", [speed()], rate=20, apply_delay=0.05
    ) as simulated:
        await probe.wait_for(f"{PUMP}/twin/update")
        delta = {"event_id": "d", "timestamp": 1, "twin": {}, "delta": {"speed": "1500"}}
        await probe.publish(f"{PUMP}/twin/update/delta", delta)
        await simulated.wait_for_value("speed", "1500")
        assert simulated.applied == {"speed": "1500"}
        while True:
            report = await probe.wait_for(f"{PUMP}/twin/update")
            if report["twin"]["speed"]["actual"]["value"] == "1500":
                break
        # It holds the setpoint from then on; values it cannot represent are refused.
        await probe.publish(f"{PUMP}/twin/update/delta", {"delta": {"speed": "fast"}})
        report = await probe.wait_for(f"{PUMP}/twin/update")
        assert report["twin"]["speed"]["actual"]["value"] == "1500"
        assert simulated.values["speed"] == "1500"


async def test_csv_replay(broker: MosquittoBroker, probe: MqttProbe, tmp_path: Path) -> None:
    readings = tmp_path / "readings.csv"
    readings.write_text("speed,open\n10,true\n20,false\n30,True\n", encoding="utf-8")
    properties = [
        parse_property(f"speed:int:csv:file={readings}"),
        parse_property(f"valve:boolean:csv:file={readings},column=open"),
    ]
    async with SimulatedDevice(broker.host, broker.port, "default/pump-1", properties, rate=50):
        seen = []
        for _ in range(4):
            report = await probe.wait_for(f"{PUMP}/twin/update")
            twin = report["twin"]
            seen.append((twin["speed"]["actual"]["value"], twin["valve"]["actual"]["value"]))
    assert seen == [("10", "true"), ("20", "false"), ("30", "true"), ("10", "true")]


async def test_converges_with_the_edgecore_emulator(
    broker: MosquittoBroker, probe: MqttProbe
) -> None:
    devices = load_devices(DEMO_DEVICES)
    async with (
        EdgeCoreEmulator(broker.host, broker.port, node_name="demo", devices=devices) as edgecore,
        SimulatedDevice(broker.host, broker.port, "default/pump-1", [speed()], rate=20) as pump,
    ):
        # The demo file's expected speed is 1200: EdgeCore's delta drives the pump there.
        await pump.wait_for_value("speed", "1200")
        await edgecore.cloud_update("default/pump-1", {"speed": "1350"})
        await pump.wait_for_value("speed", "1350")
        while True:
            document = await probe.wait_for(f"{PUMP}/twin/update/document")
            current = document["twin"]["speed"]["current"]
            if current["actual"]["value"] == "1350":
                break
        assert current["expected"]["value"] == "1350"


async def test_cli_run_until_stopped(broker: MosquittoBroker, probe: MqttProbe) -> None:
    parser = argparse.ArgumentParser()
    device_module.add_arguments(parser)
    args = parser.parse_args(
        [
            "--mqtt-url", broker.url,
            "--spec", str(DEMO_DEVICES),
            "--device", "default/valve-1",
            "--rate", "20",
        ]
    )  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(device_module.run(args, stop))
    valve = "$hw/events/device/default/valve-1"
    assert (await probe.wait_for(f"{valve}/state/update"))["state"] == "online"
    report = await probe.wait_for(f"{valve}/twin/update")
    assert report["twin"]["open"]["actual"]["value"] == "false"
    stop.set()
    await task
    assert (await probe.wait_for(f"{valve}/state/update"))["state"] == "offline"


def test_legacy_layout_takes_single_level_ids() -> None:
    with pytest.raises(ValueError, match="<name>"):
        SimulatedDevice("127.0.0.1", 1, "default/pump-1", [speed()], topic_layout="legacy")
    with pytest.raises(ValueError, match="<namespace>/<name>"):
        SimulatedDevice("127.0.0.1", 1, "pump-1", [speed()])
    SimulatedDevice("127.0.0.1", 1, "pump-1", [speed()], topic_layout="legacy")


@pytest.mark.parametrize(
    ("value", "kind", "text"),
    [
        (1e-7, "float", "0"),
        (123456789012345678901.5, "float", "123456789012345683968"),
        (-0.001, "float", "0"),
        (21.5, "float", "21.5"),
        (22.0, "float", "22"),
        (21.6, "int", "22"),
    ],
)
def test_numbers_are_formatted_for_edgecore(value: float, kind: str, text: str) -> None:
    assert format_number(value, kind, precision=2) == text  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("speed:int", "NAME:TYPE:GENERATOR"),
        ("speed:double:constant:value=1", "type must be one of"),
        ("speed:int:noise", "generator must be one of"),
        ("open:boolean:sine:period=1", "needs an int or float"),
        ("speed:int:randomwalk:min=1,max=2", "needs step="),
        ("speed:int:constant:value=1.5", "is not an int"),
        ("name:string:constant:value=a b", "characters EdgeCore refuses"),
        ("speed:int:constant:value", "is not KEY=VALUE"),
    ],
)
def test_bad_property_flags_are_explained(flag: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_property(flag)


def test_spec_files(tmp_path: Path) -> None:
    spec = load_spec(DEMO_DEVICES, "default/pump-1")
    assert spec.rate == 0.5
    assert spec.apply_delay == 2
    assert [p.name for p in spec.properties] == ["speed"]
    single = tmp_path / "spec.yaml"
    single.write_text(
        "device: default/thermo-9\nrate: 4\nproperties:\n"
        "  - {name: temperature, type: int, generator: randomwalk, min: 1, max: 9, step: 1}\n",
        encoding="utf-8",
    )
    spec = load_spec(single)
    assert spec.device_id == "default/thermo-9"
    assert spec.properties[0].params["max"] == "9"
    with pytest.raises(ValueError, match="no device"):
        load_spec(DEMO_DEVICES, "default/nope")
