"""What ``notify.render`` emits validates against the notification schemas of
``/openapi.json``.

The renderer writes notifications directly (it serves many subscribers at once and does not
go through pydantic); the models in ``api.schemas`` describe them. This contract keeps the
two together: every kind of change, with and without each optional part, rendered and then
checked against the published JSON Schema and decoded strictly by the model.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_schema_validator import OAS31Validator
from pydantic import BaseModel

from mep_kubeedge_adapter.api.openapi import document
from mep_kubeedge_adapter.api.openapi_parts import ComponentSchema
from mep_kubeedge_adapter.api.schemas import NOTIFICATION_MODELS
from mep_kubeedge_adapter.domain import Device, DeviceId, PropertyChange, TwinValue
from mep_kubeedge_adapter.notify.render import (
    MembershipNotice,
    Notice,
    StateNotice,
    TwinNotice,
    render,
)

HREF = "https://gw/app/kubeedge_devices/v1/subscriptions/s-1"
MODELS: dict[str, type[BaseModel]] = {m.__name__: m for m in NOTIFICATION_MODELS}
SCHEMAS = {
    name: model.model_json_schema(mode="serialization", schema_generator=ComponentSchema)
    for name, model in MODELS.items()
}

texts = st.text(alphabet="abcXYZ019-_.:/@#", min_size=1, max_size=12)
millis = st.integers(min_value=0, max_value=253_402_300_799_999)
values = st.none() | st.builds(TwinValue, texts, st.none() | millis)
device_ids = st.builds(DeviceId, texts, texts)
property_changes = st.builds(
    PropertyChange,
    reported=values,
    previous_reported=values,
    desired=values,
    previous_desired=values,
    reported_changed=st.booleans(),
    desired_changed=st.booleans(),
    deleted=st.booleans(),
)
states = st.none() | st.sampled_from(["online", "offline", "ok", "unknown", "unhealthy"])
changes = st.one_of(
    st.builds(TwinNotice, device_ids, millis, st.dictionaries(texts, property_changes, max_size=3)),
    st.builds(StateNotice, device_ids, millis, states, states, st.none() | texts),
    st.builds(
        MembershipNotice,
        st.builds(
            Device,
            id=device_ids,
            model=st.none() | texts,
            node=st.none() | texts,
            labels=st.dictionaries(texts, texts, max_size=2),
        ),
        millis,
        st.sampled_from(["ADDED", "REMOVED", "UPDATED"]),
    ),
)


def _as_json(rendered: Any) -> Any:
    """The notification as a subscriber decodes it, whatever form the renderer returns."""
    if isinstance(rendered, bytes | str):
        return json.loads(rendered)
    return json.loads(json.dumps(rendered))


@settings(max_examples=150, deadline=None)
@given(change=changes, sequence=st.integers(min_value=1, max_value=2**53))
def test_every_rendered_notification_matches_its_published_schema(
    change: TwinNotice | StateNotice | MembershipNotice, sequence: int
) -> None:
    body = _as_json(render(Notice(sequence, 0.0, change), "s-1", HREF))
    kind = body["notificationType"]
    OAS31Validator(SCHEMAS[kind]).validate(body)
    MODELS[kind].model_validate(body, strict=True)


def test_the_document_publishes_the_notification_schemas() -> None:
    published = document("http://x", auth=False)["components"]["schemas"]
    for name in MODELS:
        assert published[name]["properties"]["notificationType"] == {
            "const": name,
            "type": "string",
        }
