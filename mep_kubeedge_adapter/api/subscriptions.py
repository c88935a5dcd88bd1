"""Subscription routes: create, list, read, delete, and websocket delivery.

The subscription engine (``notify``) owns subscriptions, their store and delivery; these
handlers decode, call it and encode. While no engine is wired in (``ApiDeps.subscriptions``
is ``None``) the routes answer 503 problem+json, so the API's shape does not depend on it.

Tenancy: with ``MKA_API__AUTH=jwt`` each subscription belongs to the token subject that
created it (the app instance id); any other subject gets 404 for it on every route, the
websocket included, and lists only its own. A token without a subject gets 403. Without
auth every caller is one tenant.

The websocket route checks the subscription *before* upgrading, so an unknown id is a plain
404 problem the client can read; after the upgrade the engine owns the socket (and its pings)
until the subscription ends or the client leaves. Sockets still open at shutdown are closed with 1001
(going away) in ``on_shutdown``.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import WSCloseCode, web
from pydantic import ValidationError

from mep_kubeedge_adapter.api.auth import CLAIMS, WEBSOCKET_BEARER_PROTOCOL
from mep_kubeedge_adapter.api.bodies import read_json
from mep_kubeedge_adapter.api.deps import API_BASE, DEPS, SubscriptionApi
from mep_kubeedge_adapter.api.links import links, websocket_url
from mep_kubeedge_adapter.api.openapi_parts import json_body, ref, responses
from mep_kubeedge_adapter.api.problems import echo_request_id, validation_detail
from mep_kubeedge_adapter.api.schemas import SubscriptionInfo, encode
from mep_kubeedge_adapter.domain import AdapterError, ErrorKind
from mep_kubeedge_adapter.notify.models import (
    Caller,
    Subscription,
    SubscriptionRequest,
    subscription_href,
)

log = structlog.get_logger(__name__)

SUBSCRIPTIONS = f"{API_BASE}/subscriptions"
SUBSCRIPTION = f"{API_BASE}/subscriptions/{{subscription_id}}"
WEBSOCKET = f"{API_BASE}/subscriptions/{{subscription_id}}/websocket"


OPEN_SOCKETS = web.AppKey("open_websockets", set[web.WebSocketResponse])


def _engine(request: web.Request) -> SubscriptionApi:
    engine = request.app[DEPS].subscriptions
    if engine is None:
        raise AdapterError(ErrorKind.UNAVAILABLE, "subscriptions are not available in this adapter")
    return engine


def _caller(request: web.Request) -> Caller:
    """The token's subject with ``auth=jwt`` (each subject a tenant), else one tenant."""
    address = request.remote or ""
    if request.app[DEPS].settings.api.auth != "jwt":
        return Caller(subject=None, address=address)
    subject = request.get(CLAIMS, {}).get("sub")
    if not isinstance(subject, str) or not subject:
        raise AdapterError(
            ErrorKind.FORBIDDEN,
            "the bearer token names no subject (sub); subscriptions belong to the app "
            "whose token created them",
        )
    return Caller(subject=subject, address=address)


def _base(request: web.Request) -> str:
    """The device API's base URL (``…/kubeedge_devices/v1``) as the caller reaches it."""
    return links(request, request.app[DEPS].settings.api.public_url).url(API_BASE)


def subscription_info(subscription: Subscription, base_url: str) -> SubscriptionInfo:
    """The subscription as the API answers with it, linked from the device API's
    ``base_url`` as the caller reaches it (SPEC §4)."""
    href = subscription_href(base_url, subscription.id)
    websocket = websocket_url(href) + "/websocket" if subscription.request_websocket_uri else None
    return SubscriptionInfo.of(subscription.id, subscription.request, href, websocket)


async def _read_request(request: web.Request) -> SubscriptionRequest:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="send the subscription as application/json")
    body = await read_json(request)
    try:
        return SubscriptionRequest.model_validate(body)
    except ValidationError as exc:
        raise AdapterError(ErrorKind.INVALID, validation_detail(exc)) from exc


async def create_subscription(request: web.Request) -> web.Response:
    engine = _engine(request)
    caller = _caller(request)
    body = await _read_request(request)
    base = _base(request)
    subscription = await engine.create(body, base_url=base, caller=caller)
    answer = subscription_info(subscription, base)
    return web.json_response(
        encode(answer), status=201, headers={"Location": answer.links.self_.href}
    )


async def list_subscriptions(request: web.Request) -> web.Response:
    engine = _engine(request)
    base = _base(request)
    listed = await engine.list(caller=_caller(request))
    return web.json_response([encode(subscription_info(s, base)) for s in listed])


async def read_subscription(request: web.Request) -> web.Response:
    engine = _engine(request)
    subscription = await engine.get(request.match_info["subscription_id"], caller=_caller(request))
    return web.json_response(encode(subscription_info(subscription, _base(request))))


async def delete_subscription(request: web.Request) -> web.Response:
    engine = _engine(request)
    await engine.delete(request.match_info["subscription_id"], caller=_caller(request))
    return web.Response(status=204)


async def subscription_websocket(request: web.Request) -> web.StreamResponse:
    engine = _engine(request)
    subscription_id = request.match_info["subscription_id"]
    caller = _caller(request)
    subscription = await engine.get(subscription_id, caller=caller)
    if not subscription.request_websocket_uri:
        raise AdapterError(
            ErrorKind.NOT_FOUND,
            f"subscription {subscription_id} did not ask for websocket delivery "
            "(requestWebsocketUri)",
        )
    ws = web.WebSocketResponse(protocols=(WEBSOCKET_BEARER_PROTOCOL,))
    if not ws.can_prepare(request).ok:
        raise web.HTTPUpgradeRequired(
            text="this route only serves websocket upgrades", headers={"Upgrade": "websocket"}
        )
    echo_request_id(request, ws)
    await ws.prepare(request)
    sockets = request.app[OPEN_SOCKETS]
    sockets.add(ws)
    try:
        await engine.serve_websocket(subscription_id, ws, caller=caller)
    except Exception:
        # After the upgrade there is no HTTP response left to carry a problem.
        log.exception("websocket_delivery_failed", subscription=subscription_id)
        await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"delivery failed")
    finally:
        sockets.discard(ws)
        if not ws.closed:
            await ws.close()
    return ws


async def _close_sockets(app: web.Application) -> None:
    sockets = app[OPEN_SOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"adapter shutting down")


def add_routes(app: web.Application) -> None:
    sockets: set[web.WebSocketResponse] = set()
    app[OPEN_SOCKETS] = sockets
    app.on_shutdown.append(_close_sockets)
    app.router.add_post(SUBSCRIPTIONS, create_subscription)
    app.router.add_get(SUBSCRIPTIONS, list_subscriptions, allow_head=False)
    app.router.add_get(SUBSCRIPTION, read_subscription, allow_head=False)
    app.router.add_delete(SUBSCRIPTION, delete_subscription)
    app.router.add_get(WEBSOCKET, subscription_websocket, allow_head=False)


# ------------------------------------------------------------------ OpenAPI


def openapi_paths() -> dict[str, Any]:
    """The subscription operations for ``/openapi.json``."""
    info = ref("SubscriptionInfo")
    subscription_id = {
        "name": "subscription_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    paths = _subscription_paths(subscription_id, info)
    for path in paths.values():
        for name, operation in path.items():
            if name != "parameters":
                operation["responses"]["403"]["description"] = _FORBIDDEN
    return paths


_FORBIDDEN = (
    "With MKA_API__AUTH=jwt, a token that names no subject (sub); on create, a limit "
    "reached (type urn:mka:problem:quota-exceeded: MKA_NOTIFY__MAX_SUBSCRIPTIONS or "
    "MKA_NOTIFY__MAX_SUBSCRIPTIONS_PER_CALLER)"
)


def _subscription_paths(subscription_id: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    return {
        SUBSCRIPTIONS: {
            "post": {
                "operationId": "createSubscription",
                "summary": "Subscribe to twin, state or membership changes",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("SubscriptionRequest")}},
                },
                "responses": responses(
                    {"201": json_body(info, "The new subscription", "Location")},
                    "400",
                    "401",
                    "403",
                    "413",
                    "415",
                    "503",
                ),
            },
            "get": {
                "operationId": "listSubscriptions",
                "summary": "The caller's subscriptions (with JWT: the token subject's own)",
                "responses": responses(
                    {"200": json_body({"type": "array", "items": info}, "Subscriptions")},
                    "401",
                    "403",
                    "503",
                ),
            },
        },
        SUBSCRIPTION: {
            "parameters": [subscription_id],
            "get": {
                "operationId": "readSubscription",
                "summary": "One subscription",
                "responses": responses(
                    {"200": json_body(info, "The subscription")}, "401", "403", "404", "503"
                ),
            },
            "delete": {
                "operationId": "deleteSubscription",
                "summary": "Remove a subscription",
                "responses": responses(
                    {"204": {"description": "Removed"}}, "401", "403", "404", "503"
                ),
            },
        },
        WEBSOCKET: {
            "parameters": [subscription_id],
            "get": {
                "operationId": "subscriptionWebsocket",
                "summary": "Websocket delivery of the subscription's notifications",
                "description": "Upgrade to a websocket; each notification arrives as one "
                "text message with the JSON of a callback notification. Clients that "
                "cannot set Authorization may offer the subprotocols 'bearer, <token>' "
                "or add ?access_token=<token>.",
                "responses": responses(
                    {"101": {"description": "Switching to the websocket protocol"}},
                    "401",
                    "403",
                    "404",
                    "426",
                    "503",
                ),
            },
        },
    }
