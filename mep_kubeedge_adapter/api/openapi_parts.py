"""The building blocks of ``/openapi.json``, shared by the modules that describe their routes.

``openapi.py`` assembles the document; each route module (``iots``, ``subscriptions``)
describes its own operations with these helpers, so every operation words its headers and
problem responses the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import (
    GenerateJsonSchema,
    JsonSchemaMode,
    JsonSchemaValue,
    models_json_schema,
)
from pydantic_core import core_schema

from mep_kubeedge_adapter.api.problems import PROBLEM_JSON

__all__ = [
    "HEADERS",
    "SCHEMAS",
    "ComponentSchema",
    "Json",
    "header_refs",
    "json_body",
    "model_schemas",
    "query_parameter",
    "ref",
    "responses",
]

SCHEMAS = "#/components/schemas/"

Json = dict[str, Any]


def ref(name: str) -> Json:
    """A reference to the component schema ``name``."""
    return {"$ref": SCHEMAS + name}


class ComponentSchema(GenerateJsonSchema):
    """pydantic's JSON Schema without per-property titles, and without ``default: null``
    (a response leaves such an attribute out rather than sending ``null``)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        generated = super().default_schema(schema)
        if "default" in generated and generated["default"] is None:
            del generated["default"]
        return generated


def model_schemas(
    requests: Sequence[type[BaseModel]], answers: Sequence[type[BaseModel]]
) -> dict[str, Json]:
    """The component schemas of request models (as they validate) and response models (as
    they serialise), with every model they refer to."""
    keys: list[tuple[type[BaseModel], JsonSchemaMode]] = [(m, "validation") for m in requests]
    keys += [(m, "serialization") for m in answers]
    _, top = models_json_schema(
        keys, ref_template=SCHEMAS + "{model}", schema_generator=ComponentSchema
    )
    schemas: dict[str, Json] = top["$defs"]
    return schemas


def query_parameter(name: str, description: str, *, pattern: str | None = None) -> Json:
    """An optional string query parameter; ``pattern`` states what the server accepts."""
    schema: Json = {"type": "string"}
    if pattern is not None:
        schema["pattern"] = pattern
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


HEADERS: Json = {
    "X-Request-Id": {
        "description": "The caller's X-Request-Id, or one the adapter made; it is in every log "
        "line about the request.",
        "schema": {"type": "string"},
    },
    "ETag": {
        "description": "Strong ETag of the twin's values and timestamps",
        "required": True,
        "schema": {"type": "string"},
    },
    "Location": {
        "description": "The new subscription, as the caller reaches it",
        "required": True,
        "schema": {"type": "string", "format": "uri"},
    },
}
"""The ``components.headers`` every response refers to."""


def header_refs(*names: str) -> Json:
    """``X-Request-Id`` and the named headers of :data:`HEADERS`, as references."""
    return {name: {"$ref": f"#/components/headers/{name}"} for name in ("X-Request-Id", *names)}


def json_body(schema: Json, description: str, *headers: str) -> Json:
    """A JSON response with ``schema`` and the named headers."""
    return {
        "description": description,
        "headers": header_refs(*headers),
        "content": {"application/json": {"schema": schema}},
    }


def _problem(description: str) -> Json:
    return {
        "description": description,
        "headers": header_refs(),
        "content": {PROBLEM_JSON: {"schema": ref("Problem")}},
    }


_PROBLEMS: Mapping[str, str] = {
    "400": "The request is malformed: bad JSON, a wrong shape, an unknown property, or a "
    "value EdgeCore would refuse (nothing was published)",
    "401": "No valid mepauth bearer token (only with MKA_API__AUTH=jwt)",
    "403": "Not allowed here (MEC 033 writes need a kube source that can write)",
    "404": "No such device, model or subscription",
    "409": "The Device CR changed meanwhile, or already exists",
    "412": "If-Match does not match the twin's current ETag",
    "413": "The body is larger than MKA_API__MAX_BODY",
    "415": "The body's Content-Type is not one this operation reads",
    "426": "This route only serves websocket upgrades",
    "501": "The configured write path is not available here",
    "502": "EdgeCore (or the kube API) refused the write",
    "503": "EdgeCore's EventBus (or the subscription engine) is not available",
    "504": "EdgeCore did not answer the write in time",
}


def responses(ok: Mapping[str, Json], *problems: str) -> Json:
    """An operation's ``responses``: ``ok`` as given, a problem+json response for each of
    the ``problems`` status codes, and the problem+json ``default``."""
    described: Json = dict(ok)
    for status in problems:
        described[status] = _problem(_PROBLEMS[status])
    described["default"] = _problem(
        "Any other error (405 with Allow, 500 with a generic detail...), as problem+json"
    )
    return described
