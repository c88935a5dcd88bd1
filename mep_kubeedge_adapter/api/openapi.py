"""``GET /openapi.json``: the API described as it is served (OpenAPI 3.1).

The schemas are generated: request bodies from the pydantic models the handlers decode
with, response bodies from the models that encode them (``schemas``), so neither can drift
from what is checked or served. The operations are code beside the routes. The API tests
validate every response they receive against the served document, and a test compares its
paths with the router's routes.

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
    model_schemas,
    query_parameter,
    ref,
    responses,
)
from mep_kubeedge_adapter.api.schemas import RESPONSE_MODELS
from mep_kubeedge_adapter.notify.models import SubscriptionRequest

PATH = "/openapi.json"


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


_OPEN: list[Json] = []
"""``security`` of the routes that never need a token."""


def _paths() -> Json:
    device_ops = {
        devices.DEVICES: {
            "get": {
                "operationId": "listDevices",
                "summary": "The node's devices, with their twins",
                "parameters": [
                    query_parameter("namespace", "only devices in this namespace"),
                    query_parameter("model", "only devices of this DeviceModel"),
                    query_parameter("state", "only devices in this state (online, offline...)"),
                    {
                        "name": "label",
                        "in": "query",
                        "required": False,
                        "style": "form",
                        "explode": True,
                        "schema": {
                            "type": "array",
                            "items": {"type": "string", "pattern": devices.LABEL_FILTER_PATTERN},
                        },
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
                "parameters": [query_parameter("namespace", "only models in this namespace")],
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
    schemas = model_schemas([devices.TwinPatch, SubscriptionRequest], RESPONSE_MODELS)
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
