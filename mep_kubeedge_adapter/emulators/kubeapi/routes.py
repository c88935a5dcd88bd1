"""The HTTP side: URL routing, request decoding, and one handler per verb.

Paths: ``/api/v1/[namespaces/<ns>/]<plural>[/<name>[/<sub>]]`` and
``/apis/<group>/<version>/[namespaces/<ns>/]<plural>[/<name>[/<sub>]]``; subresources
``status`` (kinds with one) and ``pods/<name>/binding``. Every error leaves as a ``Status``
body (or, for the aggregator's 503, as its plain text) through one middleware.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from . import discovery
from .errors import (
    ApiError,
    bad_request,
    conflict,
    expired,
    method_not_allowed,
    unknown_resource,
)
from .metrics import MetricsMode
from .patching import (
    MalformedPatch,
    PatchFailed,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)
from .resources import METRICS_GROUP, ResourceType
from .selectors import Filter
from .watch import stream_watch

if TYPE_CHECKING:
    from .server import FakeApiServer

__all__ = ["make_app"]

_TRUE: Final = frozenset({"1", "t", "T", "true", "TRUE", "True"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Target:
    """What a resource URL names."""

    group: discovery.ServedGroup
    version: str
    rtype: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None

    @property
    def group_version(self) -> str:
        return self.group.group_version(self.version)


def make_app(fake: FakeApiServer) -> web.Application:
    routes = _Routes(fake)
    app = web.Application(middlewares=[routes.errors])
    # The client asks for "/apis/", "/api/" and "/version/"; the real server serves both.
    for slash in ("", "/"):
        app.router.add_get(f"/version{slash}", routes.version)
        app.router.add_get(f"/api{slash}", routes.core_versions)
        app.router.add_get(f"/apis{slash}", routes.group_list)
        app.router.add_route("*", f"/api/{{version}}{slash}", routes.core_resource_list)
        app.router.add_route("*", f"/apis/{{group}}{slash}", routes.group)
        app.router.add_route("*", f"/apis/{{group}}/{{version}}{slash}", routes.resource_list)
    app.router.add_route("*", "/api/{version}/{tail:.+}", routes.core_resources)
    app.router.add_route("*", "/apis/{group}/{version}/{tail:.+}", routes.resources)
    return app


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


class _Routes:
    def __init__(self, fake: FakeApiServer) -> None:
        self.fake = fake

    # ----------------------------------------------------------------------------- plumbing

    @web.middleware
    async def errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.fake.requests.append(f"{request.method} {request.path_qs}")
        try:
            return await handler(request)
        except ApiError as e:
            if e.plain_text:
                return web.Response(
                    text=e.message + "\n",
                    status=e.code,
                    headers={"X-Content-Type-Options": "nosniff", **e.headers},
                )
            return web.json_response(e.body(), status=e.code, headers=e.headers)
        except web.HTTPNotFound:
            return web.json_response(unknown_resource().body(), status=404)
        except web.HTTPMethodNotAllowed:
            return web.json_response(method_not_allowed().body(), status=405)

    def _group(self, name: str) -> discovery.ServedGroup:
        for group in self.fake.served_groups():
            if group.name == name and group.versions:
                return group
        raise unknown_resource()

    # ----------------------------------------------------------------------------- discovery

    async def version(self, request: web.Request) -> web.Response:
        return _json(discovery.version_info(self.fake.git_version))

    async def core_versions(self, request: web.Request) -> web.Response:
        return _json(discovery.api_versions(self.fake.url.removeprefix("http://")))

    async def group_list(self, request: web.Request) -> web.Response:
        return _json(discovery.api_group_list(self.fake.served_groups()))

    async def group(self, request: web.Request) -> web.Response:
        if request.method != "GET":
            raise method_not_allowed()
        return _json(discovery.api_group(self._group(request.match_info["group"])))

    async def core_resource_list(self, request: web.Request) -> web.Response:
        return self._resource_list(request, "", request.match_info["version"])

    async def resource_list(self, request: web.Request) -> web.Response:
        return self._resource_list(
            request, request.match_info["group"], request.match_info["version"]
        )

    def _resource_list(self, request: web.Request, group_name: str, version: str) -> web.Response:
        group = self._group(group_name)
        if version not in group.versions:
            raise unknown_resource()
        if group_name == METRICS_GROUP:
            self.fake.metrics.check_available()
        if request.method != "GET":
            raise method_not_allowed()
        return _json(discovery.api_resource_list(group, version))

    # ----------------------------------------------------------------------------- resources

    async def core_resources(self, request: web.Request) -> web.StreamResponse:
        return await self._dispatch(request, "", request.match_info["version"])

    async def resources(self, request: web.Request) -> web.StreamResponse:
        return await self._dispatch(
            request, request.match_info["group"], request.match_info["version"]
        )

    def _target(self, group_name: str, version: str, tail: str) -> Target:
        group = self._group(group_name)
        if version not in group.versions:
            raise unknown_resource()
        if group_name == METRICS_GROUP:
            self.fake.metrics.check_available()
        by_plural = {r.plural: r for r in group.resources.get(version, ())}
        parts = tail.strip("/").split("/")
        namespace: str | None = None
        if parts[0] == "namespaces" and len(parts) >= 3 and parts[2] in by_plural:
            if not by_plural[parts[2]].namespaced:
                raise unknown_resource()
            namespace, parts = parts[1], parts[2:]
        rtype = by_plural.get(parts[0])
        if rtype is None or len(parts) > 3:
            raise unknown_resource()
        name = parts[1] if len(parts) >= 2 else None
        sub = parts[2] if len(parts) == 3 else None
        if sub is not None and not (
            (sub == "status" and rtype.has_status) or (sub == "binding" and rtype.kind == "Pod")
        ):
            raise unknown_resource()
        if name is not None and rtype.namespaced and namespace is None:
            raise unknown_resource()
        return Target(group, version, rtype, namespace, name, sub)

    async def _dispatch(
        self, request: web.Request, group_name: str, version: str
    ) -> web.StreamResponse:
        target = self._target(group_name, version, request.match_info["tail"])
        method = request.method
        if target.group.name == METRICS_GROUP:
            return self._metrics(request, target)
        if target.name is None:
            if method == "GET":
                if request.query.get("watch", "") in _TRUE:
                    refusal = self.fake.watch_refusal(target.rtype)
                    if refusal is not None:
                        raise refusal
                    return await self._watch(request, target)
                return self._list(request, target)
            if method == "POST" and (target.namespace is not None or not target.rtype.namespaced):
                return await self._create(request, target)
            if method == "DELETE" and "deletecollection" in target.rtype.verbs:
                return await self._delete_collection(request, target)
            raise method_not_allowed()
        if target.subresource == "binding":
            if method != "POST":
                raise method_not_allowed()
            return await self._bind(request, target)
        if method == "GET":
            return _json(self._render(target, self._lookup(target)))
        if method == "PUT":
            return self._replace(target, await _json_body(request))
        if method == "PATCH":
            return await self._patch(request, target)
        if method == "DELETE" and target.subresource is None:
            return await self._delete(request, target)
        raise method_not_allowed()

    def _lookup(self, target: Target) -> dict[str, Any]:
        assert target.name is not None
        return self.fake.store.lookup(target.rtype, target.namespace or "", target.name)

    @staticmethod
    def _render(target: Target, obj: Mapping[str, Any], *, in_list: bool = False) -> dict[str, Any]:
        """The object as this API version shows it (no conversion: relabelled only).

        Items of a built-in kind's list carry no ``kind``/``apiVersion``, as the server's
        typed lists encode them; custom resources' items do.
        """
        out = copy.deepcopy(dict(obj))
        if in_list and not target.rtype.custom:
            out.pop("kind", None)
            out.pop("apiVersion", None)
        else:
            out["apiVersion"] = target.group_version
        return out

    def _filter(self, request: web.Request, target: Target) -> Filter:
        return Filter.parse(
            target.rtype,
            target.namespace,
            request.query.get("labelSelector", ""),
            request.query.get("fieldSelector", ""),
        )

    def _list(self, request: web.Request, target: Target) -> web.Response:
        store = self.fake.store
        flt = self._filter(request, target)
        q = request.query
        list_rv = store.rv
        start_after: tuple[str, str] | None = None
        if q.get("continue"):
            try:
                token = json.loads(base64.b64decode(q["continue"]))
                list_rv = int(token["rv"])
                start_after = (str(token["ns"]), str(token["name"]))
            except (ValueError, KeyError, TypeError):
                raise bad_request("continue key is not valid") from None
            if list_rv < store.compacted_rv:
                raise ApiError(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter.",
                )
        elif q.get("resourceVersion") and q.get("resourceVersionMatch") == "Exact":
            rv = _parse_rv(q["resourceVersion"])
            if rv < store.compacted_rv:
                raise expired(rv, store.compacted_rv + 1)
        elif q.get("resourceVersionMatch") and not q.get("resourceVersion"):
            raise ApiError(
                422,
                "Invalid",
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            )
        items = [
            (key, obj)
            for key, obj in store.select(target.rtype, target.namespace)
            if flt.matches(target.rtype.key, obj)
        ]
        if start_after is not None:
            items = [(k, o) for k, o in items if k > start_after]
        meta: dict[str, Any] = {"resourceVersion": str(list_rv)}
        limit = int(q["limit"]) if q.get("limit", "").isdigit() and int(q["limit"]) > 0 else 0
        if limit and len(items) > limit:
            last = items[limit - 1][0]
            meta["continue"] = base64.b64encode(
                json.dumps({"rv": list_rv, "ns": last[0], "name": last[1]}).encode()
            ).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return _json(
            {
                "apiVersion": target.group_version,
                "kind": target.rtype.list_kind,
                "metadata": meta,
                "items": [self._render(target, o, in_list=True) for _, o in items],
            }
        )

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        q = request.query
        timeout = self.fake.default_watch_timeout
        if q.get("timeoutSeconds"):
            try:
                timeout = float(int(q["timeoutSeconds"]))
            except ValueError:
                raise bad_request("invalid timeoutSeconds") from None
        raw_rv = q.get("resourceVersion", "")
        return await stream_watch(
            request,
            store=self.fake.store,
            watches=self.fake.watches,
            flt=self._filter(request, target),
            group_version=target.group_version,
            render=lambda obj: self._render(target, obj),
            resource_version=_parse_rv(raw_rv) if raw_rv else 0,
            bookmarks=q.get("allowWatchBookmarks", "") in _TRUE,
            bookmark_interval=self.fake.bookmark_interval,
            timeout=timeout,
        )

    async def _create(self, request: web.Request, target: Target) -> web.Response:
        body = await _json_body(request)
        if isinstance(body, dict):
            body["apiVersion"] = target.group_version
        obj = self.fake.store.create(target.rtype, target.namespace or "", body)
        return _json(self._render(target, obj), status=201)

    def _replace(self, target: Target, body: Any) -> web.Response:
        assert target.name is not None
        updated = self.fake.store.update(
            target.rtype,
            target.namespace or "",
            target.name,
            body,
            subresource=target.subresource or "",
            require_resource_version=target.rtype.custom,
        )
        return _json(self._render(target, updated))

    async def _patch(self, request: web.Request, target: Target) -> web.Response:
        content_type = request.content_type
        body = await _json_body(request)
        current = self._lookup(target)
        if content_type == "application/json-patch+json":
            try:
                patched = apply_json_patch(current, body)
            except MalformedPatch as e:
                raise bad_request(str(e)) from e
            except PatchFailed as e:
                # What the real server answers for an operation that cannot be applied,
                # including a failing `test` (apiserver endpoints/handlers/patch.go).
                raise ApiError(
                    422,
                    "Invalid",
                    "the server rejected our request due to an error in our request",
                    {"causes": [{"reason": "UnexpectedServerResponse", "message": str(e)}]},
                ) from e
        elif content_type == "application/merge-patch+json":
            if not isinstance(body, dict):
                raise bad_request("a merge patch must be a JSON object")
            patched = apply_merge_patch(current, body)
        elif content_type == "application/strategic-merge-patch+json" and not target.rtype.custom:
            try:
                patched = apply_strategic_merge_patch(current, body)
            except MalformedPatch as e:
                raise bad_request(str(e)) from e
        else:
            accepted = "application/json-patch+json, application/merge-patch+json"
            if not target.rtype.custom:
                accepted += ", application/strategic-merge-patch+json"
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {accepted} (got {content_type})",
            )
        if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
            raise ApiError(422, "Invalid", "the patched object must keep its metadata")
        # A resourceVersion set by the patch is a precondition, as on the real server.
        if patched["metadata"].get("resourceVersion") not in (
            None,
            current["metadata"]["resourceVersion"],
        ):
            raise conflict(target.rtype.group, target.rtype.plural, target.name or "")
        return self._replace(target, patched)

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        options: dict[str, Any] = {}
        raw = await request.read()
        if raw.strip():
            body = await _json_body(request)
            if isinstance(body, dict):
                options = body
        q = request.query
        if "propagationPolicy" in q:
            options["propagationPolicy"] = q["propagationPolicy"]
        if "gracePeriodSeconds" in q:
            options["gracePeriodSeconds"] = q["gracePeriodSeconds"]
        if options.get("orphanDependents") is not None and "propagationPolicy" in options:
            raise ApiError(
                422,
                "Invalid",
                'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Invalid value: '
                '"{}": orphanDependents and deletionPropagation cannot be both set'.format(
                    options["propagationPolicy"]
                ),
            )
        if options.get("orphanDependents") is not None:
            options["propagationPolicy"] = "Orphan" if options["orphanDependents"] else "Background"
        grace = options.get("gracePeriodSeconds")
        if grace is not None:
            try:
                options["gracePeriodSeconds"] = int(grace)
            except (TypeError, ValueError):
                raise bad_request(f"invalid gracePeriodSeconds: {grace!r}") from None
        return options

    def _delete_one(self, target: Target, name: str, options: Mapping[str, Any]) -> web.Response:
        obj, deleted = self.fake.store.delete(
            target.rtype,
            target.namespace or "",
            name,
            propagation=options.get("propagationPolicy"),
            grace_seconds=options.get("gracePeriodSeconds"),
            preconditions=options.get("preconditions")
            if isinstance(options.get("preconditions"), dict)
            else None,
        )
        if deleted and not target.rtype.returns_deleted_object:
            details: dict[str, Any] = {"name": name}
            if target.rtype.group:
                details["group"] = target.rtype.group
            details["kind"] = target.rtype.plural
            details["uid"] = obj["metadata"]["uid"]
            return _json(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": details,
                }
            )
        return _json(self._render(target, obj))

    async def _delete(self, request: web.Request, target: Target) -> web.Response:
        assert target.name is not None
        return self._delete_one(target, target.name, await self._delete_options(request))

    async def _delete_collection(self, request: web.Request, target: Target) -> web.Response:
        options = await self._delete_options(request)
        flt = self._filter(request, target)
        store = self.fake.store
        names = [
            key
            for key, obj in store.select(target.rtype, target.namespace)
            if flt.matches(target.rtype.key, obj)
        ]
        items = []
        for namespace, name in names:
            obj, _ = store.delete(
                target.rtype,
                namespace,
                name,
                propagation=options.get("propagationPolicy"),
                grace_seconds=options.get("gracePeriodSeconds"),
            )
            items.append(self._render(target, obj, in_list=True))
        return _json(
            {
                "apiVersion": target.group_version,
                "kind": target.rtype.list_kind,
                "metadata": {"resourceVersion": str(store.rv)},
                "items": items,
            }
        )

    async def _bind(self, request: web.Request, target: Target) -> web.Response:
        body = await _json_body(request)
        node = (body.get("target") or {}).get("name") if isinstance(body, dict) else None
        if not node:
            raise ApiError(
                422,
                "Invalid",
                f'Binding "{target.name}" is invalid: target.name: Required value',
            )
        assert target.name is not None
        self.fake.store.bind(target.namespace or "", target.name, str(node))
        return _json(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            },
            status=201,
        )

    def _metrics(self, request: web.Request, target: Target) -> web.Response:
        metrics = self.fake.metrics
        if metrics.mode is MetricsMode.ABSENT:  # pragma: no cover - served_groups hides it
            raise unknown_resource()
        if request.method != "GET" or request.query.get("watch", "") in _TRUE:
            raise method_not_allowed()
        if target.name is None:
            return _json(
                metrics.list(
                    self.fake.store,
                    target.rtype,
                    target.namespace,
                    request.query.get("labelSelector", ""),
                    request.query.get("fieldSelector", ""),
                )
            )
        return _json(
            metrics.get(self.fake.store, target.rtype, target.namespace or "", target.name)
        )


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw)
    except ValueError as e:
        raise bad_request(f"error decoding request body: {e}") from e


def _parse_rv(raw: str) -> int:
    try:
        rv = int(raw)
    except ValueError:
        raise bad_request(f"invalid resource version: {raw!r}") from None
    if rv < 0:
        raise bad_request(f"invalid resource version: {raw!r}")
    return rv
