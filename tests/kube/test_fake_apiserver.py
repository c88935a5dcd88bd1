"""The real ``kubernetes`` client against the fake API server.

These tests pin both sides: that the fake answers in the shapes the client expects, and how the
client surfaces each case (what the adapter's kube source has to handle).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import urllib3
from kubernetes import client, watch

from mep_kubeedge_adapter.emulators.kubeapi import PROFILE_V1_14, PROFILE_V1_22, FakeApiServer

from .conftest import GROUP, NAMESPACES, WatchThread, load_yaml

V = "v1beta1"
NS = "default"


def device(name: str, ns: str = NS, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{V}",
        "kind": "Device",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {
            "deviceModelRef": {"name": "thermo"},
            "nodeName": "edge-1",
            "properties": [{"name": "temperature", "desired": {"value": "20"}}],
        },
    }


def api(kube_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_client)


async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


def start_watch(kube_client: client.ApiClient, **kwargs: Any) -> WatchThread:
    objects = api(kube_client)
    w = watch.Watch()  # type: ignore[no-untyped-call]
    return WatchThread(
        lambda: w.stream(  # type: ignore[no-untyped-call]
            objects.list_namespaced_custom_object, GROUP, V, NS, "devices", **kwargs
        ),
        w,
    )


async def test_discovery(fake_apiserver: FakeApiServer, kube_client: client.ApiClient) -> None:
    apis = client.ApisApi(kube_client)
    groups = await call(apis.get_api_versions)
    group = next(g for g in groups.groups if g.name == GROUP)
    assert [v.version for v in group.versions] == ["v1beta1", "v1alpha2"]
    assert group.preferred_version.version == "v1beta1"

    custom = api(kube_client)
    resources = await call(custom.get_api_resources, GROUP, "v1beta1")
    assert {r.name for r in resources.resources} == {"devices", "devicemodels", "devicestatuses"}
    assert all(r.namespaced for r in resources.resources)

    version = await call(client.VersionApi(kube_client).get_code)
    assert version.git_version.startswith("v1.")

    fake_apiserver.serve(PROFILE_V1_22)
    resources = await call(custom.get_api_resources, GROUP, "v1beta1")
    assert {r.name for r in resources.resources} == {"devices", "devicemodels"}

    fake_apiserver.serve(PROFILE_V1_14)
    with pytest.raises(client.ApiException) as exc:
        await call(custom.get_api_resources, GROUP, "v1beta1")
    assert exc.value.status == 404
    resources = await call(custom.get_api_resources, GROUP, "v1alpha2")
    assert {r.name for r in resources.resources} == {"devices", "devicemodels"}


async def test_list_namespaced_all_namespaces_and_selectors(
    fake_apiserver: FakeApiServer, kube_client: client.ApiClient
) -> None:
    fake_apiserver.create(device("a", labels={"room": "1"}))
    fake_apiserver.create(device("b", labels={"room": "2"}))
    fake_apiserver.create(device("c", ns="other"))
    custom = api(kube_client)

    listed = await call(custom.list_namespaced_custom_object, GROUP, V, NS, "devices")
    assert listed["kind"] == "DeviceList"
    assert listed["metadata"]["resourceVersion"] == fake_apiserver.resource_version
    assert [o["metadata"]["name"] for o in listed["items"]] == ["a", "b"]
    assert all(o["apiVersion"] == f"{GROUP}/{V}" for o in listed["items"])

    everywhere = await call(custom.list_cluster_custom_object, GROUP, V, "devices")
    assert {o["metadata"]["name"] for o in everywhere["items"]} == {"a", "b", "c"}

    by_label = await call(
        custom.list_namespaced_custom_object, GROUP, V, NS, "devices", label_selector="room in (2)"
    )
    assert [o["metadata"]["name"] for o in by_label["items"]] == ["b"]
    by_field = await call(
        custom.list_cluster_custom_object, GROUP, V, "devices", field_selector="metadata.name=c"
    )
    assert [o["metadata"]["namespace"] for o in by_field["items"]] == ["other"]
    with pytest.raises(client.ApiException) as exc:
        await call(
            custom.list_cluster_custom_object, GROUP, V, "devices", field_selector="spec.nodeName=x"
        )
    assert exc.value.status == 400

    page = await call(custom.list_cluster_custom_object, GROUP, V, "devices", limit=2)
    assert len(page["items"]) == 2
    assert page["metadata"]["continue"]
    rest = await call(
        custom.list_cluster_custom_object,
        GROUP,
        V,
        "devices",
        limit=2,
        _continue=page["metadata"]["continue"],
    )
    assert len(rest["items"]) == 1
    assert "continue" not in rest["metadata"]

    # Read through v1alpha2: no conversion, same body relabelled.
    old = await call(custom.get_namespaced_custom_object, GROUP, "v1alpha2", NS, "devices", "a")
    assert old["apiVersion"] == f"{GROUP}/v1alpha2"
    assert old["spec"]["nodeName"] == "edge-1"


async def test_watch_from_list_sees_add_modify_delete(
    fake_apiserver: FakeApiServer, kube_client: client.ApiClient
) -> None:
    fake_apiserver.create(device("a"))
    listed = await call(api(kube_client).list_namespaced_custom_object, GROUP, V, NS, "devices")
    rv = listed["metadata"]["resourceVersion"]
    fake_apiserver.create(device("b"))  # after the list, before the watch: must be replayed

    w = start_watch(kube_client, resource_version=rv, timeout_seconds=5)
    await fake_apiserver.wait_for_watches(1)
    fake_apiserver.modify("Device", NS, "a", {"spec": {"nodeName": "edge-2"}})
    fake_apiserver.create(device("x", ns="other"))  # other namespace: not seen
    fake_apiserver.delete("Device", NS, "b")

    seen = []
    for _ in range(3):
        event = await w.next()
        assert isinstance(event, dict)
        seen.append((event["type"], event["raw_object"]["metadata"]["name"]))
        assert isinstance(event["object"], dict)
    assert seen == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    assert w.watch.resource_version == fake_apiserver.resource_version
    w.watch.stop()  # type: ignore[no-untyped-call]
    fake_apiserver.drop_watches(abrupt=False)
    await w.join()


async def test_watch_without_resource_version_starts_with_synthetic_adds(
    fake_apiserver: FakeApiServer, kube_client: client.ApiClient
) -> None:
    fake_apiserver.create(device("a"))
    w = start_watch(kube_client, timeout_seconds=1)
    event = await w.next()
    assert isinstance(event, dict)
    assert (event["type"], event["raw_object"]["metadata"]["name"]) == ("ADDED", "a")
    assert await w.next() is None  # the server-side timeout ends the stream cleanly


async def test_bookmarks_carry_the_latest_resource_version(
    fake_apiserver: FakeApiServer, kube_client: client.ApiClient
) -> None:
    listed = await call(api(kube_client).list_namespaced_custom_object, GROUP, V, NS, "devices")
    w = start_watch(
        kube_client,
        resource_version=listed["metadata"]["resourceVersion"],
        allow_watch_bookmarks=True,
        timeout_seconds=3,
    )
    await fake_apiserver.wait_for_watches(1)
    fake_apiserver.create(device("x", ns="other"))  # advances the RV without an event here
    while True:
        event = await w.next()
        assert isinstance(event, dict)
        if event["type"] == "BOOKMARK":
            break
    assert event["object"]["metadata"]["resourceVersion"] == fake_apiserver.resource_version
    assert w.watch.resource_version == fake_apiserver.resource_version
    fake_apiserver.drop_watches(abrupt=False)
    while (event := await w.next()) is not None:
        assert isinstance(event, dict)
        assert event["type"] == "BOOKMARK"


async def test_queued_events_go_out_before_a_due_bookmark() -> None:
    # With bookmarks due all the time, every event queued behind another must still be sent
    # (and before any bookmark, whose resourceVersion would otherwise skip it).
    async with FakeApiServer(bookmark_interval=0.001, namespaces=NAMESPACES) as fake:
        configuration = client.Configuration(host=fake.url)
        kube_client = client.ApiClient(configuration)
        try:
            w = start_watch(
                kube_client,
                resource_version=fake.resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=30,
            )
            await fake.wait_for_watches(1)
            first_rv = int(fake.resource_version)
            created: list[str] = []
            seen: list[str] = []
            for burst in range(5):
                for i in range(10):
                    created.append(fake.create(device(f"d{burst}-{i}"))["metadata"]["name"])
                while len(seen) < len(created):
                    event = await w.next()
                    assert isinstance(event, dict), event
                    if event["type"] == "BOOKMARK":
                        # Every event up to a bookmark's version was sent before it.
                        rv = int(event["object"]["metadata"]["resourceVersion"])
                        assert rv <= first_rv + len(seen)
                    else:
                        seen.append(event["raw_object"]["metadata"]["name"])
            assert seen == created
            fake.drop_watches(abrupt=False)
            while (event := await w.next()) is not None:
                assert isinstance(event, dict)
                assert event["type"] == "BOOKMARK"
        finally:
            kube_client.close()  # type: ignore[no-untyped-call]
            kube_client.rest_client.close()


async def test_stale_resource_version_is_410(
    fake_apiserver: FakeApiServer, kube_client: client.ApiClient
) -> None:
    fake_apiserver.create(device("a"))
    stale = fake_apiserver.resource_version
    fake_apiserver.modify("Device", NS, "a", {"metadata": {"labels": {"k": "v"}}})
    fake_apiserver.compact()

    # With timeout_seconds the client raises at once on the ERROR event.
    w = start_watch(kube_client, resource_version=stale, timeout_seconds=5)
    error = await w.next()
    assert isinstance(error, client.ApiException)
    assert error.status == 410
    assert error.reason.startswith("Expired: too old resource version")

    # Without it, the client silently retries once from the same resourceVersion, then raises.
    w = start_watch(kube_client, resource_version=stale)
    error = await w.next()
    assert isinstance(error, client.ApiException)
    assert error.status == 410
    assert sum("watch=true" in r for r in fake_apiserver.requests) == 3

    # A list for an exact, compacted resourceVersion is an HTTP 410.
    with pytest.raises(client.ApiException) as exc:
        await call(
            api(kube_client).list_namespaced_custom_object,
            GROUP,
            V,
            NS,
            "devices",
            resource_version=stale,
            resource_version_match="Exact",
        )
    assert exc.value.status == 410


async def test_history_bound_expires_old_versions(kube_client: client.ApiClient) -> None:
    async with FakeApiServer(history_size=2, namespaces=NAMESPACES) as fake:
        configuration = client.Configuration(host=fake.url)
        with client.ApiClient(configuration) as other:
            first = fake.create(device("a"))["metadata"]["resourceVersion"]
            for n in range(3):
                fake.modify("Device", NS, "a", {"metadata": {"labels": {"n": str(n)}}})
            w = start_watch(other, resource_version=first, timeout_seconds=5)
            error = await w.next()
            assert isinstance(error, client.ApiException)
            assert error.status == 410
            other.rest_client.close()


async def test_dropped_watch_surfaces_as_protocol_error(
    fake_apiserver: FakeApiServer, kube_client: client.ApiClient
) -> None:
    w = start_watch(
        kube_client, resource_version=fake_apiserver.resource_version, timeout_seconds=5
    )
    await fake_apiserver.wait_for_watches(1)
    fake_apiserver.drop_watches(abrupt=True)
    ended = await w.next()
    assert isinstance(ended, urllib3.exceptions.ProtocolError)


async def test_down_and_up_on_the_same_url(
    fake_apiserver: FakeApiServer, kube_client: client.ApiClient
) -> None:
    fake_apiserver.create(device("a"))
    await fake_apiserver.go_down()
    custom = api(kube_client)
    kube_client.configuration.retries = 0  # fail fast instead of urllib3's three retries
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        await call(
            custom.list_namespaced_custom_object, GROUP, V, NS, "devices", _request_timeout=2
        )
    await fake_apiserver.come_up()
    listed = await call(custom.list_namespaced_custom_object, GROUP, V, NS, "devices")
    assert [o["metadata"]["name"] for o in listed["items"]] == ["a"]


async def test_get_create_conflicts_and_404(
    fake_apiserver: FakeApiServer, kube_client: client.ApiClient
) -> None:
    custom = api(kube_client)
    created = await call(
        custom.create_namespaced_custom_object, GROUP, V, NS, "devices", device("a")
    )
    meta = created["metadata"]
    assert meta["generation"] == 1
    assert meta["uid"]
    assert meta["creationTimestamp"]

    with pytest.raises(client.ApiException) as exc:
        await call(custom.create_namespaced_custom_object, GROUP, V, NS, "devices", device("a"))
    assert exc.value.status == 409
    assert '"reason": "AlreadyExists"' in str(exc.value.body)

    with pytest.raises(client.ApiException) as exc:
        await call(custom.get_namespaced_custom_object, GROUP, V, NS, "devices", "nope")
    assert exc.value.status == 404
    assert '"reason": "NotFound"' in str(exc.value.body)
    assert '"kind": "Status"' in str(exc.value.body)

    fake_apiserver.modify("Device", NS, "a", {"spec": {"nodeName": "edge-2"}})
    stale = dict(created, spec={**created["spec"], "nodeName": "edge-3"})
    with pytest.raises(client.ApiException) as exc:
        await call(custom.replace_namespaced_custom_object, GROUP, V, NS, "devices", "a", stale)
    assert exc.value.status == 409
    assert '"reason": "Conflict"' in str(exc.value.body)

    fresh = await call(custom.get_namespaced_custom_object, GROUP, V, NS, "devices", "a")
    fresh["spec"]["nodeName"] = "edge-3"
    replaced = await call(
        custom.replace_namespaced_custom_object, GROUP, V, NS, "devices", "a", fresh
    )
    assert replaced["metadata"]["generation"] == 3
    assert int(replaced["metadata"]["resourceVersion"]) > int(fresh["metadata"]["resourceVersion"])

    deleted = await call(custom.delete_namespaced_custom_object, GROUP, V, NS, "devices", "a")
    assert deleted["metadata"]["name"] == "a"
    with pytest.raises(client.ApiException) as exc:
        await call(custom.delete_namespaced_custom_object, GROUP, V, NS, "devices", "a")
    assert exc.value.status == 404


async def test_json_patch_with_failing_test_op_is_refused(
    fake_apiserver: FakeApiServer, kube_client: client.ApiClient
) -> None:
    fake_apiserver.create(device("a"))
    custom = api(kube_client)
    json_patch = "application/json-patch+json"
    ok = [
        {"op": "test", "path": "/spec/properties/0/name", "value": "temperature"},
        {"op": "add", "path": "/spec/properties/0/desired/value", "value": "25"},
    ]
    patched = await call(
        custom.patch_namespaced_custom_object,
        GROUP,
        V,
        NS,
        "devices",
        "a",
        ok,
        _content_type=json_patch,
    )
    assert patched["spec"]["properties"][0]["desired"]["value"] == "25"

    wrong = [
        {"op": "test", "path": "/spec/properties/0/name", "value": "humidity"},
        {"op": "add", "path": "/spec/properties/0/desired/value", "value": "30"},
    ]
    with pytest.raises(client.ApiException) as exc:
        await call(
            custom.patch_namespaced_custom_object,
            GROUP,
            V,
            NS,
            "devices",
            "a",
            wrong,
            _content_type=json_patch,
        )
    assert exc.value.status == 422
    assert '"reason": "Invalid"' in str(exc.value.body)
    assert fake_apiserver.get("Device", NS, "a")["spec"]["properties"][0]["desired"] == {
        "value": "25"
    }


async def test_merge_patch(fake_apiserver: FakeApiServer, kube_client: client.ApiClient) -> None:
    fake_apiserver.create(device("a", labels={"keep": "1", "drop": "1"}))
    custom = api(kube_client)
    patched = await call(
        custom.patch_namespaced_custom_object,
        GROUP,
        V,
        NS,
        "devices",
        "a",
        {"metadata": {"labels": {"drop": None}}, "status": {"state": "online"}},
    )
    assert patched["metadata"]["labels"] == {"keep": "1"}
    assert patched["status"] == {"state": "online"}
    assert patched["metadata"]["generation"] == 2  # no status subresource: any change counts

    with pytest.raises(client.ApiException) as exc:
        await call(
            custom.patch_namespaced_custom_object,
            GROUP,
            V,
            NS,
            "devices",
            "a",
            {"metadata": {"resourceVersion": "1"}, "status": {"state": "offline"}},
        )
    assert exc.value.status == 409


async def test_sample_crs_round_trip(
    fake_apiserver: FakeApiServer, kube_client: client.ApiClient
) -> None:
    custom = api(kube_client)
    model = load_yaml("samples/v1beta1_temperature-model.yaml")
    instance = load_yaml("samples/v1beta1_temperature-instance.yaml")
    await call(custom.create_namespaced_custom_object, GROUP, V, NS, "devicemodels", model)
    await call(custom.create_namespaced_custom_object, GROUP, V, NS, "devices", instance)
    got = await call(
        custom.get_namespaced_custom_object, GROUP, V, NS, "devices", "temperature-instance"
    )
    assert got["spec"] == instance["spec"]
