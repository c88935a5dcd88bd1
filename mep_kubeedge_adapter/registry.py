"""The live device registry: the adapter's in-memory truth about this node's devices.

The EventBus client and the kube source feed it decoded facts; it applies them with
EdgeCore's semantics and tells listeners what changed. Listeners are called
synchronously, in order, right after each change; they must only enqueue work
(notification dispatch, MP1 registration), never block.

Merge rules between the two sources:

* EdgeCore's twin (EventBus) and the CRs (kube source) may both carry reported and
  desired values; the newer timestamp wins, and a value without a timestamp never
  replaces one that has a timestamp.
* A device exists while EdgeCore lists it or a Device CR bound to this node exists.
* A property exists while EdgeCore has its twin or the Device CR declares it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from mep_kubeedge_adapter.domain import (
    ChangeEvent,
    Device,
    DeviceAdded,
    DeviceId,
    DeviceModel,
    DeviceRemoved,
    DeviceUpdated,
    ModelChanged,
    ModelId,
    PropertyChange,
    StateChanged,
    TwinChanged,
    TwinProperty,
    TwinState,
    TwinValue,
    now_ms,
)

Listener = Callable[[ChangeEvent], None]
Clock = Callable[[], int]


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """What a Device CR says about a device (kube source)."""

    id: DeviceId
    model: str | None = None
    node: str | None = None
    labels: Mapping[str, str] | None = None
    description: str | None = None
    protocol: str | None = None
    declared_properties: Iterable[str] = ()
    desired: Mapping[str, TwinValue] | None = None
    """All desired values of the CR (a CR value missing here is cleared); ``None``: unknown."""
    reported: Mapping[str, TwinValue] | None = None
    state: str | None = None
    last_online: str | None = None


def _newer(incoming: TwinValue | None, current: TwinValue | None) -> bool:
    """Whether ``incoming`` should replace ``current`` under the newer-timestamp rule."""
    if incoming is None:
        return False
    if current is None:
        return True
    if incoming.timestamp is None:
        return current.timestamp is None
    if current.timestamp is None:
        return True
    return incoming.timestamp >= current.timestamp


class DeviceRegistry:
    """Devices and models of this node, with change events.

    All mutating methods return nothing and report through listeners; reads return
    immutable snapshots, safe to hand to other tasks.
    """

    def __init__(self, clock: Clock = now_ms) -> None:
        self._devices: dict[DeviceId, Device] = {}
        self._models: dict[ModelId, DeviceModel] = {}
        self._listeners: list[Listener] = []
        self._clock = clock

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self._devices)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._devices

    def get(self, device_id: DeviceId) -> Device | None:
        return self._devices.get(device_id)

    def devices(self) -> list[Device]:
        return sorted(self._devices.values(), key=lambda d: d.id)

    def device_ids(self) -> set[DeviceId]:
        return set(self._devices)

    def model(self, model_id: ModelId) -> DeviceModel | None:
        return self._models.get(model_id)

    def models(self) -> list[DeviceModel]:
        return sorted(self._models.values(), key=lambda m: m.id)

    def model_of(self, device: Device) -> DeviceModel | None:
        if device.model is None:
            return None
        return self._models.get(ModelId(device.id.namespace, device.model))

    def property_count(self) -> int:
        return sum(len(d.properties) for d in self._devices.values())

    # ---------------------------------------------------------------- listeners

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` after every change; returns a function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _emit(self, event: ChangeEvent) -> None:
        for listener in list(self._listeners):
            listener(event)

    # -------------------------------------------------------- EventBus: devices

    def sync_membership(self, members: Mapping[DeviceId, str | None]) -> None:
        """EdgeCore's full device list (``membership/get/result``): id → description."""
        for device_id, description in members.items():
            self.add_member(device_id, description)
        for device_id in [d for d, dev in self._devices.items() if dev.in_eventbus]:
            if device_id not in members:
                self.remove_member(device_id)

    def add_member(self, device_id: DeviceId, description: str | None = None) -> None:
        """EdgeCore knows the device (membership added, or listed by membership/get)."""
        device = self._devices.get(device_id)
        if device is None:
            device = Device(id=device_id, description=description, in_eventbus=True)
            self._devices[device_id] = device
            self._emit(DeviceAdded(device, self._clock()))
            return
        if not device.in_eventbus or (description and description != device.description):
            self._devices[device_id] = replace(
                device, in_eventbus=True, description=description or device.description
            )

    def remove_member(self, device_id: DeviceId) -> None:
        """EdgeCore no longer knows the device (membership removed, or a 404 on twin/get)."""
        device = self._devices.get(device_id)
        if device is None or not device.in_eventbus:
            return
        if device.in_kube:
            self._replace_twin(
                device_id,
                {
                    name: _kube_values_only(prop)
                    for name, prop in device.properties.items()
                    if prop.declared
                },
                in_eventbus=False,
            )
            return
        del self._devices[device_id]
        self._emit(DeviceRemoved(device, self._clock()))

    # ---------------------------------------------------------- EventBus: twins

    def sync_twin(self, device_id: DeviceId, twins: Mapping[str, TwinState]) -> None:
        """EdgeCore's full twin of a device (``twin/get/result``).

        Twins absent from the snapshot were deleted on the edge: their EventBus values go.
        """
        device = self._devices.get(device_id)
        if device is None:
            return
        updated: dict[str, TwinProperty] = {}
        for name, prop in device.properties.items():
            if name in twins:
                continue
            if prop.declared:
                updated[name] = _kube_values_only(prop)
        for name, state in twins.items():
            updated[name] = _apply_state(device.properties.get(name), name, state, full=True)
        self._replace_twin(device_id, updated)

    def apply_twin_states(
        self,
        device_id: DeviceId,
        twins: Mapping[str, TwinState | None],
        *,
        full: bool = False,
    ) -> None:
        """Twin facts from EdgeCore: ``None`` for a key means EdgeCore deleted that twin.

        Partial states (update result, delta ``twin``) carry only the sides the message had;
        sides they lack are left as they are. ``full`` states (a document's ``current``)
        describe the whole twin: a side they lack is empty on the edge.
        """
        device = self._devices.get(device_id)
        if device is None:
            return
        updated = dict(device.properties)
        for name, state in twins.items():
            prop = device.properties.get(name)
            if state is None:
                _forget_twin(updated, name, prop)
            else:
                updated[name] = _apply_state(prop, name, state, full=full)
        # Only the named twins can differ from the device's current properties.
        self._replace_twin(device_id, updated, touched=twins.keys())

    def apply_document(self, device_id: DeviceId, currents: Mapping[str, TwinState | None]) -> None:
        """A twin document's ``current`` states: the whole state of each changed twin."""
        self.apply_twin_states(device_id, currents, full=True)

    def apply_state(self, device_id: DeviceId, state: str, last_online: str | None) -> None:
        """EdgeCore's ``state/update/result`` (or a CR's status)."""
        device = self._devices.get(device_id)
        if device is None:
            return
        state = state.lower()
        new_last_online = last_online or device.last_online
        if state == device.state and new_last_online == device.last_online:
            return
        updated = replace(device, state=state, last_online=new_last_online)
        self._devices[device_id] = updated
        self._emit(
            StateChanged(device_id, state, device.state, new_last_online, self._clock(), updated)
        )

    # --------------------------------------------------------- kube: CR facts

    def upsert_spec(self, spec: DeviceSpec) -> None:
        """A Device CR bound to this node was listed, added or modified."""
        device = self._devices.get(spec.id)
        added = device is None
        if device is None:
            device = Device(id=spec.id)
        declared = set(spec.declared_properties)
        properties: dict[str, TwinProperty] = {}
        for name, prop in device.properties.items():
            if name in declared:
                properties[name] = replace(prop, declared=True)
            elif prop.declared and not _has_eventbus_values(prop):
                continue
            else:
                properties[name] = replace(prop, declared=False)
        for name in declared:
            properties.setdefault(name, TwinProperty(name=name, declared=True))
        if spec.desired is not None:
            # The CR is the whole truth about its desired values: one it dropped goes.
            for name, prop in properties.items():
                if _from_kube(prop.desired) and name not in spec.desired:
                    properties[name] = replace(prop, desired=None)
        for name, value in (spec.desired or {}).items():
            prop = properties.get(name) or TwinProperty(name=name, declared=name in declared)
            if _newer(value, prop.desired):
                prop = replace(prop, desired=value)
            properties[name] = prop
        for name, value in (spec.reported or {}).items():
            prop = properties.get(name) or TwinProperty(name=name, declared=name in declared)
            if _newer(value, prop.reported):
                prop = replace(prop, reported=value)
            properties[name] = prop
        meta = replace(
            device,
            model=spec.model,
            node=spec.node,
            labels=dict(spec.labels or {}),
            description=spec.description or device.description,
            protocol=spec.protocol,
            in_kube=True,
        )
        if added:
            meta = replace(meta, properties=properties)
            self._devices[spec.id] = meta
            self._emit(DeviceAdded(meta, self._clock()))
        else:
            metadata_changed = (
                meta.model != device.model
                or meta.node != device.node
                or meta.labels != device.labels
                or meta.protocol != device.protocol
                or meta.description != device.description
            )
            self._devices[spec.id] = meta
            if metadata_changed:
                self._emit(DeviceUpdated(meta, self._clock()))
            self._replace_twin(spec.id, properties)
        if spec.state is not None:
            self.apply_state(spec.id, spec.state, spec.last_online)

    def apply_kube_reported(
        self,
        device_id: DeviceId,
        reported: Mapping[str, TwinValue],
        state: str | None = None,
        last_online: str | None = None,
    ) -> None:
        """Reported values from a DeviceStatus CR (KubeEdge ≥ 1.23)."""
        device = self._devices.get(device_id)
        if device is None:
            return
        properties = dict(device.properties)
        for name, value in reported.items():
            prop = properties.get(name) or TwinProperty(name=name)
            if _newer(value, prop.reported):
                properties[name] = replace(prop, reported=value)
        self._replace_twin(device_id, properties)
        if state is not None:
            self.apply_state(device_id, state, last_online)

    def remove_spec(self, device_id: DeviceId) -> None:
        """The Device CR was deleted or is no longer bound to this node."""
        device = self._devices.get(device_id)
        if device is None or not device.in_kube:
            return
        if not device.in_eventbus:
            del self._devices[device_id]
            self._emit(DeviceRemoved(device, self._clock()))
            return
        self._devices[device_id] = replace(device, in_kube=False)
        self._replace_twin(
            device_id,
            {
                name: replace(
                    prop,
                    declared=False,
                    reported=None if _from_kube(prop.reported) else prop.reported,
                    desired=None if _from_kube(prop.desired) else prop.desired,
                )
                for name, prop in device.properties.items()
                if _has_eventbus_values(prop)
            },
        )

    def upsert_model(self, model: DeviceModel) -> None:
        previous = self._models.get(model.id)
        self._models[model.id] = model
        if previous != model:
            self._emit(ModelChanged(model.id, removed=False, timestamp=self._clock()))

    def remove_model(self, model_id: ModelId) -> None:
        if self._models.pop(model_id, None) is not None:
            self._emit(ModelChanged(model_id, removed=True, timestamp=self._clock()))

    # ---------------------------------------------------------------- internals

    def _replace_twin(
        self,
        device_id: DeviceId,
        properties: Mapping[str, TwinProperty],
        *,
        in_eventbus: bool | None = None,
        touched: Iterable[str] | None = None,
    ) -> None:
        """Give the device ``properties`` and emit what changed.

        ``touched``: the only names whose property may differ (the others are the same
        objects as the device's), so only they are compared; ``None`` compares all.
        """
        device = self._devices[device_id]
        current = device.properties
        changes: dict[str, PropertyChange] = {}
        names = current.keys() | properties.keys() if touched is None else touched
        for name in names:
            before = current.get(name)
            after = properties.get(name)
            if before is after:
                continue
            change = _diff(before, after)
            if change is not None:
                changes[name] = change
        updated = _with_properties(
            device,
            dict(properties),
            device.in_eventbus if in_eventbus is None else in_eventbus,
        )
        self._devices[device_id] = updated
        if changes:
            self._emit(TwinChanged(device_id, changes, self._clock(), updated))


def _with_properties(
    device: Device, properties: Mapping[str, TwinProperty], in_eventbus: bool
) -> Device:
    """``replace(device, properties=..., in_eventbus=...)`` without its per-call overhead.

    Runs for every twin message; a test checks it carries every other field over.
    """
    return Device(
        device.id,
        properties,
        device.model,
        device.node,
        device.labels,
        device.description,
        device.protocol,
        device.state,
        device.last_online,
        in_eventbus,
        device.in_kube,
    )


def _kube_values_only(prop: TwinProperty) -> TwinProperty:
    """The property without what EdgeCore told us (a CR still declares it)."""
    return replace(
        prop,
        reported=prop.reported if _from_kube(prop.reported) else None,
        desired=prop.desired if _from_kube(prop.desired) else None,
        twin_type=None,
    )


def _forget_twin(properties: dict[str, TwinProperty], name: str, prop: TwinProperty | None) -> None:
    """EdgeCore deleted a twin: a declared property stays with its CR values, others go."""
    if prop is None:
        return
    if prop.declared:
        properties[name] = _kube_values_only(prop)
    else:
        properties.pop(name, None)


def _from_kube(value: TwinValue | None) -> bool:
    return value is not None and value.source == "kube"


def _has_eventbus_values(prop: TwinProperty) -> bool:
    return (prop.reported is not None and prop.reported.source == "eventbus") or (
        prop.desired is not None and prop.desired.source == "eventbus"
    )


def _apply_state(
    prop: TwinProperty | None, name: str, state: TwinState, *, full: bool
) -> TwinProperty:
    """Merge EdgeCore's twin state into a property.

    ``full`` states (get result, document ``current``) describe the whole twin: a side
    they lack is empty on the edge, so an EventBus value on that side is cleared.
    """
    if prop is None:
        prop = TwinProperty(name=name)
    reported = prop.reported
    desired = prop.desired
    if state.actual is not None:
        if _newer(state.actual, reported) or not _from_kube(reported):
            reported = state.actual
    elif full and not _from_kube(reported):
        reported = None
    if state.expected is not None:
        if _newer(state.expected, desired) or not _from_kube(desired):
            desired = state.expected
    elif full and not _from_kube(desired):
        desired = None
    twin_type = state.twin_type or prop.twin_type
    optional = state.optional if state.optional is not None else prop.optional
    if (
        reported is prop.reported
        and desired is prop.desired
        and twin_type == prop.twin_type
        and optional == prop.optional
    ):
        return prop
    return TwinProperty(prop.name, twin_type, reported, desired, optional, prop.declared)


def _diff(before: TwinProperty | None, after: TwinProperty | None) -> PropertyChange | None:
    if before == after:
        return None
    b_rep = before.reported if before else None
    a_rep = after.reported if after else None
    b_des = before.desired if before else None
    a_des = after.desired if after else None
    reported_changed = _value_changed(b_rep, a_rep)
    desired_changed = _value_changed(b_des, a_des)
    deleted = before is not None and after is None
    if not (reported_changed or desired_changed or deleted):
        return None
    return PropertyChange(
        reported=a_rep,
        previous_reported=b_rep,
        desired=a_des,
        previous_desired=b_des,
        reported_changed=reported_changed,
        desired_changed=desired_changed,
        deleted=deleted,
    )


def _value_changed(before: TwinValue | None, after: TwinValue | None) -> bool:
    """A change worth an event: a value appeared, went or differs.

    EdgeCore re-publishes every report even when the value is the same; the new
    timestamp is stored, but subscribers are not told about a value they already have.
    """
    if before is None or after is None:
        return before is not after
    return before.value != after.value
