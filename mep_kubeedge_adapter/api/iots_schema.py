"""JSON Schemas of the MEC 033 shapes the ``/iots/v1`` routes serve.

Written from the MEC 033 V3.1.1 attribute tables (DeviceInfo, IotPlatformInfo,
MBTransportInfo) and MEC 011's TransportInfo, with ``additionalProperties: false`` so a
misspelt or invented field name is caught. ``/openapi.json`` publishes them.
"""

from __future__ import annotations

from typing import Any

_STR = {"type": "string"}
_KEY_VALUE = {
    "type": "object",
    "required": ["key", "value"],
    "additionalProperties": False,
    "properties": {"key": _STR, "value": _STR},
}
DEVICE_INFO: dict[str, Any] = {
    "type": "object",
    "required": ["deviceAuthenticationInfo", "deviceId", "enabled"],
    "additionalProperties": False,
    "properties": {
        "deviceAuthenticationInfo": {"type": ["string", "object"]},
        "deviceMetadata": {"type": "array", "items": _KEY_VALUE},
        **{k: _STR for k in ("gpsi", "pei", "supi", "msisdn", "imei", "imsi", "iccid")},
        "deviceId": _STR,
        "requestedMecTrafficRule": {"type": "array"},
        "requestedIotPlatformId": _STR,
        "requestedUserTransportId": _STR,
        "deviceSpecificMessageFormats": {"type": "object"},
        "downlinkInfo": {"type": "object"},
        "clientCertificate": _STR,
        "enabled": {"type": "boolean"},
    },
}
_ENDPOINT = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": False,
    "properties": {
        "uris": {"type": "array", "items": {"type": "string", "format": "uri"}, "minItems": 1},
        "addresses": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["host", "port"],
                "additionalProperties": False,
                "properties": {"host": _STR, "port": {"type": "integer"}},
            },
        },
        "alternative": {"type": "object"},
        "fqdn": {"type": "array", "items": _STR},
    },
}
_SECURITY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "oAuth2Info": {
            "type": "object",
            "additionalProperties": False,
            "required": ["grantTypes"],
            "properties": {
                "grantTypes": {
                    "type": "array",
                    "items": {
                        "enum": [
                            "OAUTH2_AUTHORIZATION_CODE",
                            "OAUTH2_IMPLICIT_GRANT",
                            "OAUTH2_RESOURCE_OWNER",
                            "OAUTH2_CLIENT_CREDENTIALS",
                        ]
                    },
                },
                "tokenEndpoint": _STR,
            },
        }
    },
}
_TRANSPORT_PROPS: dict[str, Any] = {
    "id": _STR,
    "name": _STR,
    "description": _STR,
    "type": {
        "enum": [
            "REST_HTTP",
            "MB_TOPIC_BASED",
            "MB_ROUTING",
            "MB_PUBSUB",
            "RPC",
            "RPC_STREAMING",
            "WEBSOCKET",
        ]
    },
    "protocol": _STR,
    "version": _STR,
    "endpoint": _ENDPOINT,
    "security": _SECURITY,
    "implSpecificInfo": {"type": "object"},
}
TRANSPORT_INFO = {
    "type": "object",
    "required": ["id", "name", "type", "protocol", "version", "endpoint", "security"],
    "additionalProperties": False,
    "properties": _TRANSPORT_PROPS,
}
MB_TRANSPORT_INFO = {
    "type": "object",
    "required": [
        "id",
        "name",
        "type",
        "protocol",
        "version",
        "endpoint",
        "security",
        "implSpecificInfo",
    ],
    "additionalProperties": False,
    "properties": {
        **_TRANSPORT_PROPS,
        "type": {"const": "MB_TOPIC_BASED"},
        "implSpecificInfo": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                k: {"type": "array", "items": _STR}
                for k in ("eventTopics", "uplinkTopics", "downlinkTopics")
            },
        },
    },
}
IOT_PLATFORM_INFO = {
    "type": "object",
    "required": ["iotPlatformId", "userTransportInfo", "enabled"],
    "additionalProperties": False,
    "properties": {
        "iotPlatformId": _STR,
        "userTransportInfo": {"type": "array", "minItems": 1, "items": MB_TRANSPORT_INFO},
        "customServicesTransportInfo": {"type": "array", "items": TRANSPORT_INFO},
        "enabled": {"type": "boolean"},
    },
}
