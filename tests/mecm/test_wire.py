"""The committed stubs are exactly what our proto generates, and the proto is lcmcontroller's."""

from __future__ import annotations

from pathlib import Path

from google.protobuf.descriptor import FieldDescriptor

from mep_kubeedge_adapter.mecm.wire import lcmservice_pb2 as pb
from mep_kubeedge_adapter.mecm.wire.codegen import GENERATED, generate

ROOT = Path(__file__).resolve().parents[2]


def test_regenerating_the_stubs_changes_nothing(tmp_path: Path) -> None:
    generate(ROOT, tmp_path)
    for relative in GENERATED:
        assert (tmp_path / relative).read_bytes() == (ROOT / relative).read_bytes(), (
            f"{relative} is stale: run `make proto`"
        )


STRING, BYTES, BOOL = (
    FieldDescriptor.TYPE_STRING,
    FieldDescriptor.TYPE_BYTES,
    FieldDescriptor.TYPE_BOOL,
)

# The reference's table: rpc → (request fields by number, response field name, client stream).
CONTRACT = {
    "instantiate": (
        {
            1: "accessToken",
            2: "tenantId",
            3: "appInstanceId",
            4: "appPackageId",
            5: "hostIp",
            6: "parameters",
            7: "akSkLcmGen",
        },
        "status",
        False,
    ),
    "terminate": (
        {1: "accessToken", 2: "tenantId", 3: "appInstanceId", 4: "hostIp"},
        "status",
        False,
    ),
    "query": (
        {1: "accessToken", 2: "appInstanceId", 3: "hostIp", 4: "tenantId"},
        "response",
        False,
    ),
    "queryKPI": ({1: "accessToken", 2: "tenantId", 3: "hostIp"}, "response", False),
    "queryPackageStatus": (
        {1: "accessToken", 2: "hostIp", 3: "packageId", 4: "tenantId"},
        "response",
        False,
    ),
    "uploadConfig": (
        {1: "accessToken", 2: "tenantId", 3: "hostIp", 4: "configFile"},
        "status",
        True,
    ),
    "removeConfig": ({1: "accessToken", 2: "tenantId", 3: "hostIp"}, "status", False),
    "workloadEvents": (
        {1: "accessToken", 2: "appInstanceId", 3: "hostIp", 4: "tenantId"},
        "response",
        False,
    ),
    "uploadPackage": (
        {1: "accessToken", 2: "appPackageId", 3: "hostIp", 4: "tenantId", 5: "package"},
        "status",
        True,
    ),
    "deletePackage": (
        {1: "accessToken", 2: "tenantId", 3: "hostIp", 4: "appPackageId"},
        "status",
        False,
    ),
}


def test_the_service_matches_the_contract_table() -> None:
    service = pb.DESCRIPTOR.services_by_name["AppLCM"]
    assert service.full_name == "internal.lcmservice.AppLCM"
    assert sorted(m.name for m in service.methods) == sorted(CONTRACT)
    for method in service.methods:
        fields, answer, streamed = CONTRACT[method.name]
        request = method.input_type
        assert {f.number: f.name for f in request.fields} == fields, method.name
        assert method.client_streaming is streamed and not method.server_streaming
        if streamed:
            assert [f.name for f in request.oneofs_by_name["data"].fields] == list(fields.values())
        for field in request.fields:
            if field.name == "parameters":
                entry = field.message_type
                assert entry is not None and entry.GetOptions().map_entry
                assert [f.type for f in entry.fields] == [STRING, STRING]
            elif field.name == "akSkLcmGen":
                assert field.type == BOOL
            elif field.name in ("configFile", "package"):
                assert field.type == BYTES
            else:
                assert field.type == STRING, (method.name, field.name)
        response = method.output_type
        assert [(f.number, f.name, f.type) for f in response.fields] == [(1, answer, STRING)]
