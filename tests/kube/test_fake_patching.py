"""The fake's strategic merge patch, case by case (the wire path is tested with the clients)."""

from __future__ import annotations

from typing import Any

import pytest

from mep_kubeedge_adapter.emulators.kubeapi.patching import (
    MalformedPatch,
    apply_strategic_merge_patch,
)

POD: dict[str, Any] = {
    "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
    "spec": {
        "containers": [
            {
                "name": "app",
                "image": "app:1",
                "ports": [{"containerPort": 80, "name": "http"}],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            },
            {"name": "side", "image": "side:1"},
        ],
        "tolerations": [{"key": "k", "operator": "Exists"}],
    },
    "status": {"conditions": [{"type": "Ready", "status": "False"}]},
}


def test_maps_merge_and_null_deletes() -> None:
    out = apply_strategic_merge_patch(POD, {"metadata": {"labels": {"a": None, "c": "3"}}})
    assert out["metadata"]["labels"] == {"b": "2", "c": "3"}
    assert POD["metadata"]["labels"] == {"a": "1", "b": "2"}  # the input is untouched


def test_lists_with_a_merge_key_merge_item_by_item() -> None:
    patch = {
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "app:2",
                    "ports": [{"containerPort": 443, "name": "https"}],
                    "env": [{"name": "B", "value": "20"}],
                },
                {"name": "new", "image": "new:1"},
            ]
        }
    }
    out = apply_strategic_merge_patch(POD, patch)
    app, side, new = out["spec"]["containers"]
    assert (app["image"], side["name"], new["name"]) == ("app:2", "side", "new")
    assert [p["containerPort"] for p in app["ports"]] == [80, 443]
    assert app["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "20"}]


def test_conditions_merge_by_type_and_other_lists_are_replaced() -> None:
    patch = {
        "spec": {"tolerations": [{"key": "other", "operator": "Exists"}]},
        "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]},
    }
    out = apply_strategic_merge_patch(POD, patch)
    assert out["spec"]["tolerations"] == [{"key": "other", "operator": "Exists"}]
    assert [c["type"] for c in out["status"]["conditions"]] == ["Ready", "PodScheduled"]


def test_service_ports_merge_on_port() -> None:
    svc = {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}
    out = apply_strategic_merge_patch(svc, {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}})
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 9090}, {"port": 443}]


def test_directives() -> None:
    deleted = apply_strategic_merge_patch(
        POD, {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}
    )
    assert [c["name"] for c in deleted["spec"]["containers"]] == ["app"]

    replaced = apply_strategic_merge_patch(
        POD, {"metadata": {"labels": {"$patch": "replace", "only": "this"}}}
    )
    assert replaced["metadata"]["labels"] == {"only": "this"}

    whole_list = apply_strategic_merge_patch(
        POD, {"spec": {"containers": [{"$patch": "replace"}, {"name": "solo", "image": "s:1"}]}}
    )
    assert whole_list["spec"]["containers"] == [{"name": "solo", "image": "s:1"}]

    retained = apply_strategic_merge_patch(
        {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
        {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
    )
    assert retained["spec"]["strategy"] == {"type": "Recreate"}

    finalizers = apply_strategic_merge_patch(
        POD, {"metadata": {"finalizers": ["y", "x"], "$deleteFromPrimitiveList/finalizers": []}}
    )
    assert finalizers["metadata"]["finalizers"] == ["x", "y"]  # merged as a set
    removed = apply_strategic_merge_patch(
        POD, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}
    )
    assert removed["metadata"]["finalizers"] == []

    ordered = apply_strategic_merge_patch(
        POD, {"spec": {"$setElementOrder/containers": [{"name": "side"}, {"name": "app"}]}}
    )
    assert ordered["spec"] == POD["spec"]  # accepted and ignored


def test_malformed_patches_are_refused() -> None:
    with pytest.raises(MalformedPatch):
        apply_strategic_merge_patch(POD, [{"op": "add"}])
    with pytest.raises(MalformedPatch):
        apply_strategic_merge_patch(POD, {"spec": {"containers": [{"image": "no-name:1"}]}})
    with pytest.raises(MalformedPatch):
        apply_strategic_merge_patch(POD, {"metadata": {"$patch": "sideways"}})
