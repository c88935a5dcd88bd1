"""KubeEdge EdgeCore v1.23.1 devicetwin behaviour on the MQTT EventBus, for labs and tests.

Written from the KubeEdge reference and a capture of a real EdgeCore v1.23.1 only; it shares no
code with the adapter's KubeEdge codecs on purpose.

What it does, per received message (one debug log line each):

- `$hw/events/device/{id}/twin/update` → validation; on success `…/twin/update/result` (event_id
  echoed), `…/twin/update/document` (changed keys, `last`/`current`), and `…/twin/update/delta`
  (fresh uuid; all twins with a non-empty expected value, `delta` = those whose expected string
  differs from the actual string) if anything differs. Any error rejects the whole request:
  unparsable JSON, a missing `twin`, a bad key or a bad value is answered with a 400 on
  `$hw/events/device//twin/update/result` with an empty event_id (the device cannot be named);
  an unknown device gets a 404 on its own result topic; a type mismatch a 400 there.
- `…/twin/get` → `…/twin/get/result`: all non-deleted twins (`{}` if none) or a 404.
- `…/state/update` → `…/state/update/result` for `online|offline|ok|unknown|unhealthy`
  (case-insensitive); other states, unknown devices and bad JSON are dropped silently.
- `$hw/events/node/{any}/membership/get` → `$hw/events/node/{node_name}/membership/get/result`.
- Cloud-side changes, which a real EdgeCore receives from cloudcore, are injected over MQTT the
  way the capture shows EdgeCore reacting to them:
  - `$hw/events/node/{node}/membership/updated` with `added_devices` / `removed_devices`: a new
    device is added (its twin entries are processed as a cloud sync, see below) and
    `membership/updated` is published on the same node topic with a fresh uuid, one message per
    device. Because the emulator hears its own publication, an added device's twin entries are
    processed a second time, exactly as the capture shows.
  - `…/twin/cloud_updated`: a cloud sync (document + delta, never a result). Like cloudcore, it
    must carry `expected_version` / `actual_version` (`{"cloud": N, "edge": 0}`): entries
    without versions are refused (for a new key that yields `{"last": null, "current": null}`
    in the document and no twin), entries whose `cloud` is older than the stored one or whose
    `edge` is older than the stored edge version are refused silently. `cloud_update()` builds
    a valid sync for you.

Topic layouts: `namespaced` (v1.17+, id `<namespace>/<name>`, two topic levels; single-level
device topics are ignored) or `legacy` (≤ v1.15, id `<name>`). Publications are QoS 1, retain
false, and never contain versions. Timestamps are this process's clock in milliseconds.

Device file (YAML or JSON), a list under `devices:`:

    devices:
      - namespace: default
        name: thermo-1
        description: living-room thermometer
        twins:
          temperature: {type: int, expected: "22", actual: "21"}
          status: {type: string}             # a twin without values
          humidity:
            type: float
            actual: {value: "40.5", timestamp: 1700000000000}

Unknown keys (for instance a `simulate:` block used by the device simulator) are ignored.

Modules: `devicetwin` (the pure devicetwin module: message in, publications out), `twins`
(its state and EdgeCore's value rules), `devicefile` (the device file), `emulator` (the MQTT
shell, `EdgeCoreEmulator`) and `cli` (the verb).
"""

from mep_kubeedge_adapter.emulators.edgecore.cli import add_arguments, run
from mep_kubeedge_adapter.emulators.edgecore.devicefile import load_devices, parse_devices
from mep_kubeedge_adapter.emulators.edgecore.devicetwin import DeviceTwinModule
from mep_kubeedge_adapter.emulators.edgecore.emulator import EdgeCoreEmulator
from mep_kubeedge_adapter.emulators.edgecore.twins import (
    EmulatedDevice,
    Publication,
    TopicLayout,
    Twin,
    TwinValue,
    TwinVersion,
)

__all__ = [
    "DeviceTwinModule",
    "EdgeCoreEmulator",
    "EmulatedDevice",
    "Publication",
    "TopicLayout",
    "Twin",
    "TwinValue",
    "TwinVersion",
    "add_arguments",
    "load_devices",
    "parse_devices",
    "run",
]
