"""``GET /openapi.json``: the API described as it is served (OpenAPI 3.1).

The document is code, next to the encoders it describes, so a new field or route changes
both in one commit; the API tests validate every response they receive against the served
document, and a test compares its paths with the router's routes. Request bodies come from
the pydantic models the handlers decode with, so a request schema cannot drift from the
check that enforces it.

``servers`` is the caller's own base URL (``links.base_url``): behind the MEP gateway the
document points at ``https://<gateway>/<gwName>``, which is where the caller must send
requests.
"""

from __future__ import annotations

import copy
import json
from functools import cache

from aiohttp import web

from mep_kubeedge_adapter import __version__ as package_version
from mep_kubeedge_adapter.api import devices, iots, subscriptions
from mep_kubeedge_adapter.api.deps import API_BASE, DEPS
from mep_kubeedge_adapter.api.links import base_url
from mep_kubeedge_adapter.api.openapi_parts import (
    HEADERS,
    Json,
    header_refs,
    json_body,
    nullable,
    pydantic_schemas,
    ref,
    responses,
)
from mep_kubeedge_adapter.api.problems import PROBLEM_TYPE_PREFIX

PATH = "/openapi.json"


_LINK: Json = {
    "type": "object",
    "required": ["href"],
    "properties": {"href": {"type": "string", "format": "uri"}},
    "additionalProperties": False,
}

_TWIN_VALUE: Json = {
    "type": "object",
    "description": "One side of a twin property. Values are strings, as in KubeEdge.",
    "required": ["value"],
    "properties": {
        "value": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"},
    },
    "additionalProperties": False,
}

_TWIN_PROPERTY: Json = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {
            "type": "string",
            "description": "The DeviceModel's type as KubeEdge spells it (INT, FLOAT, DOUBLE, "
            "STRING, BOOLEAN, BYTES, STREAM) when the model names the property, "
            "else the twin's type (int, float, boolean, string).",
        },
        "reported": ref("TwinValue"),
        "desired": ref("TwinValue"),
    },
    "additionalProperties": False,
}

_TWIN_INFO: Json = {
    "type": "object",
    "required": ["properties"],
    "properties": {
        "properties": {"type": "object", "additionalProperties": ref("TwinPropertyInfo")}
    },
    "additionalProperties": False,
}

_DEVICE_INFO: Json = {
    "type": "object",
    "required": [
        "namespace",
        "name",
        "model",
        "node",
        "labels",
        "state",
        "lastOnlineTime",
        "twin",
        "_links",
    ],
    "properties": {
        "namespace": {"type": "string"},
        "name": {"type": "string"},
        "model": nullable({"type": "string"}),
        "node": nullable({"type": "string"}),
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "state": nullable(
            {"type": "string", "description": "online, offline, ok, unknown, unhealthy"}
        ),
        "lastOnlineTime": nullable({"type": "string", "description": "RFC 3339"}),
        "twin": ref("TwinInfo"),
        "_links": {
            "type": "object",
            "required": ["self", "twin"],
            "properties": {"self": ref("Link"), "twin": ref("Link")},
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}

_PROPERTY_SPEC: Json = {
    "type": "object",
    "required": ["name", "type", "accessMode", "unit", "description", "minimum", "maximum"],
    "properties": {
        "name": {"type": "string"},
        "type": {"type": "string", "description": "INT, FLOAT, DOUBLE, STRING, BOOLEAN..."},
        "accessMode": nullable({"type": "string", "description": "ReadWrite or ReadOnly"}),
        "unit": nullable({"type": "string"}),
        "description": nullable({"type": "string"}),
        "minimum": nullable({"type": "string"}),
        "maximum": nullable({"type": "string"}),
    },
    "additionalProperties": False,
}

_MODEL_INFO: Json = {
    "type": "object",
    "required": ["namespace", "name", "protocol", "properties", "_links"],
    "properties": {
        "namespace": {"type": "string"},
        "name": {"type": "string"},
        "protocol": nullable({"type": "string"}),
        "properties": {"type": "array", "items": ref("DevicePropertySpec")},
        "_links": {
            "type": "object",
            "required": ["self"],
            "properties": {"self": ref("Link")},
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}

_PROBLEM: Json = {
    "type": "object",
    "description": f"RFC 7807. ``type`` is ``{PROBLEM_TYPE_PREFIX}<kind>`` (not-found, invalid, "
    "precondition-failed, upstream-rejected, upstream-timeout, unavailable, "
    "not-implemented, unauthorized, too-large, unsupported-media-type, "
    "method-not-allowed, internal...).",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string", "format": "uri-reference"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string", "format": "uri-reference"},
        "requestId": {"type": "string", "description": "as echoed in X-Request-Id"},
    },
}

_HEALTH: Json = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"const": "alive"}},
}

_READINESS: Json = {
    "type": "object",
    "description": "The state of the EventBus (MQTT, EdgeCore), the kube source and the MEP.",
    "required": ["status"],
    "properties": {"status": {"enum": ["ready", "not-ready"]}},
    "additionalProperties": True,
}


def _path_params(kind: str, example: str) -> list[Json]:
    return [
        {
            "name": "namespace",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "example": "default",
        },
        {
            "name": "name",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": f"the {kind}'s name",
            "example": example,
        },
    ]


def _query(name: str, description: str) -> Json:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }


_OPEN: list[Json] = []
"""``security`` of the routes that never need a token."""


def _paths() -> Json:
    device_ops = {
        devices.DEVICES: {
            "get": {
                "operationId": "listDevices",
                "summary": "The node's devices, with their twins",
                "parameters": [
                    _query("namespace", "only devices in this namespace"),
                    _query("model", "only devices of this DeviceModel"),
                    _query("state", "only devices in this state (online, offline...)"),
                    {
                        "name": "label",
                        "in": "query",
                        "required": False,
                        "style": "form",
                        "explode": True,
                        "schema": {"type": "array", "items": {"type": "string"}},
                        "description": "key=value; repeat for several labels (all must match)",
                    },
                ],
                "responses": responses(
                    {"200": json_body({"type": "array", "items": ref("DeviceInfo")}, "Devices")},
                    "400",
                    "401",
                ),
            }
        },
        devices.DEVICE: {
            "parameters": _path_params("device", "thermo-1"),
            "get": {
                "operationId": "readDevice",
                "summary": "One device with its twin",
                "responses": responses(
                    {"200": json_body(ref("DeviceInfo"), "The device")}, "401", "404"
                ),
            },
        },
        devices.TWIN: {
            "parameters": _path_params("device", "thermo-1"),
            "get": {
                "operationId": "readTwin",
                "summary": "A device's twin: reported and desired values per property",
                "parameters": [
                    {
                        "name": "If-None-Match",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "an ETag from an earlier read: 304 while unchanged",
                    }
                ],
                "responses": responses(
                    {
                        "200": json_body(ref("TwinInfo"), "The twin", "ETag"),
                        "304": {
                            "description": "The twin still has the ETag in If-None-Match",
                            "headers": header_refs("ETag"),
                        },
                    },
                    "401",
                    "404",
                ),
            },
            "patch": {
                "operationId": "writeDesired",
                "summary": "Set desired values; answers once EdgeCore (or the kube API) accepted",
                "parameters": [
                    {
                        "name": "If-Match",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "write only if the twin still has this ETag (else 412)",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        media: {
                            "schema": ref("TwinPatch"),
                            "example": {"desired": {"setpoint": "22"}},
                        }
                        for media in devices.PATCH_CONTENT_TYPES
                    },
                },
                "responses": responses(
                    {"200": json_body(ref("TwinInfo"), "The twin after the write", "ETag")},
                    "400",
                    "401",
                    "404",
                    "412",
                    "413",
                    "415",
                    "501",
                    "502",
                    "503",
                    "504",
                ),
            },
        },
        devices.MODELS: {
            "get": {
                "operationId": "listDeviceModels",
                "summary": "The DeviceModels of the node's devices",
                "parameters": [_query("namespace", "only models in this namespace")],
                "responses": responses(
                    {
                        "200": json_body(
                            {"type": "array", "items": ref("DeviceModelInfo")}, "Models"
                        )
                    },
                    "401",
                ),
            }
        },
        devices.MODEL: {
            "parameters": _path_params("model", "thermometer"),
            "get": {
                "operationId": "readDeviceModel",
                "summary": "One DeviceModel: property names, types, access modes, units",
                "responses": responses(
                    {"200": json_body(ref("DeviceModelInfo"), "The model")}, "401", "404"
                ),
            },
        },
    }
    return {**device_ops, **subscriptions.openapi_paths()}


def _operations_paths() -> Json:
    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Alive (never needs a token)",
                "security": _OPEN,
                "responses": responses({"200": json_body(ref("Health"), "Alive")}),
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Ready once the EventBus is connected and the first sync is done",
                "security": _OPEN,
                "responses": responses(
                    {
                        "200": json_body(ref("Readiness"), "Ready"),
                        "503": json_body(ref("Readiness"), "Not ready; the body says why"),
                    }
                ),
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (never needs a token)",
                "security": _OPEN,
                "responses": responses(
                    {
                        "200": {
                            "description": "Prometheus text exposition format",
                            "headers": header_refs(),
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    }
                ),
            }
        },
        PATH: {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": responses(
                    {"200": json_body({"type": "object"}, "OpenAPI 3.1 document")}, "401"
                ),
            }
        },
    }


@cache
def _document(auth: bool) -> Json:
    schemas: dict[str, Json] = {
        "Problem": _PROBLEM,
        "Link": _LINK,
        "TwinValue": _TWIN_VALUE,
        "TwinPropertyInfo": _TWIN_PROPERTY,
        "TwinInfo": _TWIN_INFO,
        "DeviceInfo": _DEVICE_INFO,
        "DevicePropertySpec": _PROPERTY_SPEC,
        "DeviceModelInfo": _MODEL_INFO,
        "Health": _HEALTH,
        "Readiness": _READINESS,
        **pydantic_schemas(devices.TwinPatch),
        **subscriptions.openapi_schemas(),
        **iots.openapi_schemas(),
    }
    document: Json = {
        "openapi": "3.1.0",
        "info": {
            "title": "KubeEdge device twins for MEC apps",
            "version": package_version,
            "description": "The devices of one KubeEdge edge node, their twins and models, "
            "desired-value writes and change subscriptions, served behind "
            f"EdgeGallery's MEP gateway. Base path {API_BASE}. Errors are "
            "application/problem+json (RFC 7807).",
        },
        "paths": {**_paths(), **iots.openapi_paths(), **_operations_paths()},
        "components": {"schemas": schemas, "headers": HEADERS},
    }
    if auth:
        document["components"]["securitySchemes"] = {
            "mepauth": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "An RS512 token from EdgeGallery's mepauth (POST /mep/token). "
                "The websocket route also takes it as the subprotocol pair "
                "'bearer, <token>' or as the access_token query parameter.",
            }
        }
        document["security"] = [{"mepauth": []}]
    return document


def document(server_url: str, *, auth: bool) -> Json:
    """The document with ``servers`` pointing at ``server_url``."""
    doc = copy.deepcopy(_document(auth))
    doc["servers"] = [{"url": server_url}]
    return doc


async def serve(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    doc = document(
        base_url(request, deps.settings.api.public_url), auth=deps.settings.api.auth == "jwt"
    )
    return web.Response(text=json.dumps(doc), content_type="application/json")
