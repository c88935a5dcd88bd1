"""The JSON of query, queryKPI and workloadEvents, key by key against k8splugin's shapes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from mep_kubeedge_adapter.mecm.placement import TOLERATIONS, place
from mep_kubeedge_adapter.mecm.status import (
    kpi_document,
    quantity,
    query_document,
    workload_events_document,
)
from mep_kubeedge_adapter.mecm.values import chart_values, instance_namespace

NODE: dict[str, Any] = {
    "metadata": {"name": "edge-1"},
    "status": {
        "allocatable": {"cpu": "4", "memory": "8Gi"},
        "conditions": [{"type": "Ready", "status": "False"}],
    },
}
OTHER: dict[str, Any] = {
    "metadata": {"name": "edge-2"},
    "status": {"allocatable": {"cpu": "2000m", "memory": "4096Mi"}, "conditions": []},
}


def _pod(name: str, node: str, containers: list[str], phase: str = "Running") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": f"uid-{name}"},
        "spec": {"nodeName": node, "containers": [{"name": c} for c in containers]},
        "status": {"phase": phase},
    }


def test_quantities_are_parsed_for_real() -> None:
    assert quantity("12345678n") == Decimal("0.012345678")
    assert quantity("20Mi") == 20 * 1024 * 1024
    assert quantity("1.5") == Decimal("1.5")
    assert quantity("100m") == Decimal("0.1")
    assert quantity("1e3") == 1000
    assert quantity("bogus") is None
    assert quantity(None) is None


def test_query_has_one_entry_per_pod_with_its_own_containers_and_node() -> None:
    pods = [_pod("a", "edge-1", ["app", "sidecar"]), _pod("b", "edge-2", ["app"], "Pending")]
    metrics = {
        "a": {"containers": [{"name": "app", "usage": {"cpu": "250000000n", "memory": "20Mi"}}]},
    }
    service = {
        "metadata": {"name": "svc"},
        "spec": {
            "type": "NodePort",
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}],
        },
    }
    document = query_document(pods, {"edge-1": NODE, "edge-2": OTHER}, metrics, [service])
    assert document == {
        "pods": [
            {
                "podstatus": "Running",
                "podname": "a",
                "containers": [
                    {
                        "containername": "app",
                        "metricsusage": {
                            "cpuusage": "250/4000",
                            "memusage": f"{20 * 1024 * 1024}/{8 * 1024**3}",
                            "diskusage": "",
                        },
                    },
                    {
                        "containername": "sidecar",
                        "metricsusage": {"cpuusage": "", "memusage": "", "diskusage": ""},
                    },
                ],
                "nodeName": "edge-1",
                "nodeReady": "False",
            },
            {
                "podstatus": "Pending",
                "podname": "b",
                "containers": [
                    {
                        "containername": "app",
                        "metricsusage": {"cpuusage": "", "memusage": "", "diskusage": ""},
                    }
                ],
                "nodeName": "edge-2",
                "nodeReady": "Unknown",
            },
        ],
        "services": [
            {
                "serviceName": "svc",
                "type": "NodePort",
                "ports": [
                    {
                        "port": "80",
                        "targetPort": "8080",
                        "nodePort": "30080",
                        "protocol": "TCP",
                        "name": "http",
                    }
                ],
            }
        ],
        "cpupercent": 6.25,
        "mempercent": 0.24,
    }


def test_query_without_pods_is_not_running_and_without_metrics_has_no_figures() -> None:
    assert query_document([], {}, {}, []) == {"status": "not running"}
    document = query_document([_pod("a", "edge-1", ["app"])], {"edge-1": NODE}, {}, [])
    assert document["cpupercent"] == "" and document["mempercent"] == ""
    assert document["pods"][0]["containers"][0]["metricsusage"]["cpuusage"] == ""


def test_query_kpi_is_k8splugins_envelope_in_nanocores_and_kib() -> None:
    node_metrics = {"usage": {"cpu": "1500000000n", "memory": "2097152Ki"}}
    assert kpi_document(NODE, node_metrics) == {
        "data": {
            "cpuusage": {"total": 4_000_000_000, "used": 1_500_000_000},
            "memusage": {"total": 8 * 1024 * 1024, "used": 2097152},
        },
        "retCode": 0,
        "message": "success",
        "params": None,
    }


def test_workload_events_list_events_then_waiting_reasons() -> None:
    waiting = _pod("a", "edge-1", ["app"], "Pending")
    waiting["status"]["containerStatuses"] = [
        {
            "name": "app",
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling "x"'}},
        }
    ]
    quiet = _pod("b", "edge-1", ["app"])
    events = [
        {
            "involvedObject": {"kind": "Pod", "name": "a", "uid": "uid-a"},
            "message": "Successfully assigned default/a to edge-1",
            "lastTimestamp": "2026-01-01T00:00:01Z",
        },
        {
            "involvedObject": {"kind": "Pod", "name": "a", "uid": "uid-a"},
            "message": "  Pulling image x ",
            "lastTimestamp": "2026-01-01T00:00:02Z",
        },
        {"involvedObject": {"kind": "Deployment", "name": "a"}, "message": "not a pod"},
    ]
    assert workload_events_document([waiting, quiet], list(reversed(events))) == {
        "pods": [
            {
                "podName": "a",
                "podEventsInfo": [
                    "Successfully assigned default/a to edge-1",
                    "Pulling image x",
                    'app: ImagePullBackOff: Back-off pulling "x"',
                ],
            },
            {"podName": "b", "podEventsInfo": ["Pod is running successfully"]},
        ]
    }


def test_placement_pins_pod_templates_and_labels_everything() -> None:
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "labels": {"app": "x"}},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {
                    "nodeName": "elsewhere",
                    "tolerations": [
                        {
                            "key": "node.kubernetes.io/unreachable",
                            "operator": "Exists",
                            "effect": "NoExecute",
                            "tolerationSeconds": 300,
                        }
                    ],
                },
            }
        },
    }
    placed = place(deployment, instance_id="inst-1", hostname="edge-1")
    assert placed["metadata"]["labels"] == {"app": "x", "app.kubernetes.io/instance": "inst-1"}
    template = placed["spec"]["template"]
    assert template["metadata"]["labels"]["app.kubernetes.io/instance"] == "inst-1"
    assert template["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "edge-1"}
    assert "nodeName" not in template["spec"]
    assert template["spec"]["tolerations"] == [dict(t) for t in TOLERATIONS]
    assert deployment["spec"]["template"]["spec"]["nodeName"] == "elsewhere"  # a copy
    config = place({"kind": "ConfigMap", "metadata": {"name": "c"}}, instance_id="i", hostname="n")
    assert config == {
        "kind": "ConfigMap",
        "metadata": {"name": "c", "labels": {"app.kubernetes.io/instance": "i"}},
    }


def test_values_layer_appconfig_then_the_other_parameters() -> None:
    parameters = {
        "ak": "AK",
        "sk": "SK",
        "global.mepagent.enabled": "true",
        "replicas": "2",
        "imagelocation.domainname": "registry.local",
    }
    namespace = instance_namespace(parameters, {"appconfig": {"appnamespace": "from-chart"}})
    assert namespace == "from-chart"
    assert instance_namespace({"appnamespace": "chosen"}, {}) == "chosen"
    assert instance_namespace({}, {}) == "default"
    assert chart_values(parameters, instance_id="inst-1", namespace=namespace) == {
        "appconfig": {
            "appnamespace": "from-chart",
            "aksk": {
                "appInsId": "inst-1",
                "accesskey": "AK",
                "secretkey": "SK",
                "secretname": "inst-1-aksk",
            },
        },
        "global": {"mepagent": {"enabled": True}},
        "replicas": 2,
        "imagelocation": {"domainname": "registry.local"},
    }
