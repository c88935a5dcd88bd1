"""A fake Kubernetes API server for the KubeEdge device CRDs, on loopback, for tests.

No kube-apiserver can be installed where these tests run, so the adapter's kube source is
tested with the real ``kubernetes`` client talking HTTP to this server. It serves only what
that client and a list/watch loop rely on, with the real wire shapes: discovery, list (with
selectors and paging), watch (replay from a resourceVersion, bookmarks, ``410 Expired``,
server-side timeout), get/create/replace/patch/delete with ``Status`` error bodies. See
``README.md`` for what is and is not faithful.

Usage (inside a running event loop; every helper must be called from that loop's thread)::

    async with FakeApiServer() as fake:
        fake.create({"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device", ...})
        ...  # point a kubernetes.client.Configuration at fake.url
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import random
import string
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self

from aiohttp import web

from .jsonpatch import MalformedPatch, PatchFailed, apply_json_patch, apply_merge_patch

__all__ = [
    "GROUP",
    "PROFILE_V1_14",
    "PROFILE_V1_22",
    "PROFILE_V1_23",
    "FakeApiServer",
    "WatchEvent",
]

GROUP: Final = "devices.kubeedge.io"

KINDS: Final = {
    "devices": "Device",
    "devicemodels": "DeviceModel",
    "devicestatuses": "DeviceStatus",
}
SINGULAR: Final = {
    "devices": "device",
    "devicemodels": "devicemodel",
    "devicestatuses": "devicestatus",
}
PLURALS: Final = {kind: plural for plural, kind in KINDS.items()}

Profile = Mapping[str, tuple[str, ...]]
"""Served versions (preferred first) → plurals served under each."""

PROFILE_V1_23: Final[Profile] = {
    "v1beta1": ("devices", "devicemodels", "devicestatuses"),
    "v1alpha2": ("devices", "devicemodels", "devicestatuses"),
}
"""KubeEdge 1.23+: DeviceStatus exists; v1alpha2 is still served (no conversion)."""
PROFILE_V1_22: Final[Profile] = {
    "v1beta1": ("devices", "devicemodels"),
    "v1alpha2": ("devices", "devicemodels"),
}
"""KubeEdge 1.15 to 1.22: no DeviceStatus; reported values live in ``Device.status.twins``."""
PROFILE_V1_14: Final[Profile] = {"v1alpha2": ("devices", "devicemodels")}
"""KubeEdge <= 1.14: only v1alpha2."""

VERBS: Final = ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"]
_TRUE: Final = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FIELD_LABELS: Final = frozenset({"metadata.name", "metadata.namespace"})


class ApiError(Exception):
    """An error answered as a ``Status`` object, exactly as the real API server shapes it."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details) if details is not None else None

    def body(self) -> dict[str, Any]:
        return status_body(self.code, self.reason, self.message, self.details)


def status_body(
    code: int, reason: str, message: str, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A ``meta/v1 Status`` failure object."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = dict(details)
    return body


def _not_found(plural: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{plural}.{GROUP} "{name}" not found',
        {"name": name, "group": GROUP, "kind": plural},
    )


def _conflict(plural: str, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {plural}.{GROUP} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        {"name": name, "group": GROUP, "kind": plural},
    )


def _unknown_resource() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def _expired(rv: int, oldest: int) -> ApiError:
    return ApiError(410, "Expired", f"too old resource version: {rv} ({oldest})")


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WatchEvent:
    """One stored change: the global resourceVersion it got, and the object after it."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    plural: str
    obj: Mapping[str, Any]


# --------------------------------------------------------------------------------------------
# selectors


@dataclass(frozen=True)
class _Requirement:
    key: str
    op: str  # = != in notin exists !exists
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "=":
                return present and value in self.values
            case "!=":
                return not present or value not in self.values
            case "in":
                return present and value in self.values
            case "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case _:
                return not present


def _split_terms(selector: str) -> list[str]:
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    terms.append("".join(current).strip())
    return [t for t in terms if t]


def parse_label_selector(selector: str) -> list[_Requirement]:
    """Equality- and set-based label selectors (``a=b,c!=d,e in (f,g),!h``)."""
    reqs: list[_Requirement] = []
    for term in _split_terms(selector):
        for word in (" notin ", " in "):
            if word in term:
                key, rest = term.split(word, 1)
                rest = rest.strip()
                if not (rest.startswith("(") and rest.endswith(")")):
                    raise ApiError(400, "BadRequest", f"unable to parse requirement: {term}")
                values = frozenset(v.strip() for v in rest[1:-1].split(",") if v.strip())
                reqs.append(_Requirement(key.strip(), word.strip(), values))
                break
        else:
            if "!=" in term:
                key, value = term.split("!=", 1)
                reqs.append(_Requirement(key.strip(), "!=", frozenset({value.strip()})))
            elif "=" in term:
                key, value = term.replace("==", "=").split("=", 1)
                reqs.append(_Requirement(key.strip(), "=", frozenset({value.strip()})))
            elif term.startswith("!"):
                reqs.append(_Requirement(term[1:].strip(), "!exists"))
            else:
                reqs.append(_Requirement(term, "exists"))
    return reqs


def parse_field_selector(selector: str) -> list[tuple[str, bool, str]]:
    """``metadata.name`` / ``metadata.namespace`` with ``=``, ``==``, ``!=``: all a CRD offers."""
    out: list[tuple[str, bool, str]] = []
    for term in _split_terms(selector):
        if "!=" in term:
            key, value = term.split("!=", 1)
            equal = False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            equal = True
        else:
            raise ApiError(400, "BadRequest", f"invalid field selector: {term}")
        key = key.strip()
        if key not in _FIELD_LABELS:
            raise ApiError(400, "BadRequest", f'field label not supported: "{key}"')
        out.append((key, equal, value.strip()))
    return out


@dataclass(frozen=True)
class _Filter:
    plural: str
    namespace: str | None
    labels: tuple[_Requirement, ...] = ()
    fields: tuple[tuple[str, bool, str], ...] = ()

    def matches(self, plural: str, obj: Mapping[str, Any]) -> bool:
        if plural != self.plural:
            return False
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        labels = meta.get("labels") or {}
        if not all(r.matches(labels) for r in self.labels):
            return False
        for key, equal, value in self.fields:
            actual = meta.get(key.split(".", 1)[1], "")
            if (actual == value) != equal:
                return False
        return True


# --------------------------------------------------------------------------------------------
# watches


_DROP_ABRUPT: Final = "drop-abrupt"
_DROP_CLEAN: Final = "drop-clean"


@dataclass(eq=False)
class _Watch:
    filter: _Filter
    version: str
    queue: asyncio.Queue[WatchEvent | str] = field(default_factory=asyncio.Queue)


# --------------------------------------------------------------------------------------------
# the server


class FakeApiServer:
    """In-memory API server for ``devices.kubeedge.io`` on ``127.0.0.1:<free port>``.

    State (objects, the resourceVersion counter, the bounded event history) lives in this
    object and survives :meth:`go_down` / :meth:`come_up`, like etcd behind a restarting
    apiserver. resourceVersions are one global counter rendered as a string; clients must
    treat them as opaque, and the adapter does.
    """

    def __init__(
        self,
        *,
        profile: Profile = PROFILE_V1_23,
        history_size: int = 1000,
        bookmark_interval: float = 60.0,
        default_watch_timeout: float = 1800.0,
        git_version: str = "v1.29.0",
    ) -> None:
        self._profile: dict[str, tuple[str, ...]] = dict(profile)
        self.history_size = history_size
        self.bookmark_interval = bookmark_interval
        self.default_watch_timeout = default_watch_timeout
        self.git_version = git_version
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._rv = 1000
        self._history: deque[WatchEvent] = deque()
        self._compacted_rv = self._rv
        self._watches: set[_Watch] = set()
        self._watch_changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self.requests: list[str] = []
        """``"METHOD /path?query"`` of every request served, for assertions."""

    # ----------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        await self.come_up()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.go_down()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``; stable across :meth:`go_down` / :meth:`come_up`."""
        if not self._port:
            raise RuntimeError("the fake API server was never started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def is_up(self) -> bool:
        return self._runner is not None

    async def come_up(self) -> None:
        """Start listening (again, on the same port after :meth:`go_down`)."""
        if self._runner is not None:
            return
        runner = web.AppRunner(self._make_app(), shutdown_timeout=1.0, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._port)
        await site.start()
        if not self._port:
            server = site._server
            assert isinstance(server, asyncio.Server)
            self._port = server.sockets[0].getsockname()[1]
        self._runner = runner

    async def go_down(self) -> None:
        """Stop listening and cut every open connection (watches end without a final chunk)."""
        if self._runner is None:
            return
        self.drop_watches(abrupt=True)
        runner, self._runner = self._runner, None
        await runner.cleanup()

    # ----------------------------------------------------------------------------- controls

    @property
    def resource_version(self) -> str:
        """The latest resourceVersion handed out."""
        return str(self._rv)

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    async def wait_for_watches(self, count: int, within: float = 5.0) -> None:
        """Wait until at least ``count`` watch streams are open (tests await this, not sleep)."""
        async with asyncio.timeout(within):
            while len(self._watches) < count:
                self._watch_changed.clear()
                await self._watch_changed.wait()

    def serve(self, profile: Profile) -> None:
        """Switch the served versions/resources; watches on what is no longer served end."""
        self._profile = dict(profile)
        for w in list(self._watches):
            if w.filter.plural not in self._profile.get(w.version, ()):
                w.queue.put_nowait(_DROP_CLEAN)

    def compact(self) -> None:
        """Forget the event history: watches and exact lists from older versions get 410."""
        self._history.clear()
        self._compacted_rv = self._rv

    def drop_watches(self, *, abrupt: bool = True) -> None:
        """End every open watch: ``abrupt`` cuts the connection, else the stream ends cleanly."""
        for w in list(self._watches):
            w.queue.put_nowait(_DROP_ABRUPT if abrupt else _DROP_CLEAN)

    def objects(self, kind: str) -> list[dict[str, Any]]:
        """Copies of the stored objects of a kind (``Device`` or ``devices``)."""
        plural = self._plural(kind)
        return [copy.deepcopy(o) for (p, _, _), o in sorted(self._objects.items()) if p == plural]

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """A copy of one stored object; ``KeyError`` if absent."""
        return copy.deepcopy(self._objects[(self._plural(kind), namespace, name)])

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Store a new object (kind from ``obj``) as a client's POST would; returns it."""
        plural = self._plural(str(obj.get("kind", "")))
        meta = obj.get("metadata") or {}
        return self._create(plural, str(meta.get("namespace") or "default"), obj)

    def modify(
        self,
        kind: str,
        namespace: str,
        name: str,
        change: Mapping[str, Any] | Callable[[dict[str, Any]], None],
    ) -> dict[str, Any]:
        """Change an object with a merge patch (dict) or an in-place function; emits MODIFIED."""
        plural = self._plural(kind)
        current = self._lookup(plural, namespace, name)
        if callable(change):
            updated = copy.deepcopy(current)
            change(updated)
        else:
            updated = apply_merge_patch(current, change)
        return self._store_update(plural, current, updated)

    def delete(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """Remove an object; emits DELETED."""
        return self._delete(self._plural(kind), namespace, name)

    # ----------------------------------------------------------------------------- store

    def _plural(self, kind: str) -> str:
        if kind in KINDS:
            return kind
        if kind in PLURALS:
            return PLURALS[kind]
        raise ValueError(f"unknown kind {kind!r}")

    def _lookup(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        obj = self._objects.get((plural, namespace, name))
        if obj is None:
            raise _not_found(plural, name)
        return obj

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _record(self, type_: str, plural: str, obj: Mapping[str, Any]) -> None:
        event = WatchEvent(self._rv, type_, plural, copy.deepcopy(obj))
        self._history.append(event)
        while len(self._history) > self.history_size:
            self._compacted_rv = self._history.popleft().rv
        for w in self._watches:
            if w.filter.matches(plural, event.obj):
                w.queue.put_nowait(event)

    def _create(self, plural: str, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(body, Mapping) or not isinstance(body.get("metadata", {}), Mapping):
            raise ApiError(400, "BadRequest", "the body of the request must be an object")
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        if meta.get("namespace") not in (None, "", namespace):
            raise ApiError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on "
                "the request",
            )
        name = meta.get("name")
        if not name and meta.get("generateName"):
            suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
            name = f"{meta['generateName']}{suffix}"
        if not name or not isinstance(name, str):
            raise ApiError(
                422,
                "Invalid",
                f'{KINDS[plural]}.{GROUP} "" is invalid: metadata.name: Required value: name or '
                "generateName is required",
                {"group": GROUP, "kind": KINDS[plural]},
            )
        if (plural, namespace, name) in self._objects:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{plural}.{GROUP} "{name}" already exists',
                {"name": name, "group": GROUP, "kind": plural},
            )
        meta.update(
            name=name,
            namespace=namespace,
            uid=str(uuid.uuid4()),
            resourceVersion=self._next_rv(),
            creationTimestamp=_now_rfc3339(),
            generation=1,
        )
        obj.setdefault("kind", KINDS[plural])
        self._objects[(plural, namespace, name)] = obj
        self._record("ADDED", plural, obj)
        return copy.deepcopy(obj)

    def _store_update(
        self, plural: str, current: Mapping[str, Any], updated: dict[str, Any]
    ) -> dict[str, Any]:
        """Keep server-owned metadata, bump generation for non-metadata changes, emit MODIFIED.

        An update that changes nothing keeps the resourceVersion and emits no event, as the
        real API server does.
        """
        cur_meta = current["metadata"]
        meta = updated.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        for key in ("name", "namespace", "uid", "creationTimestamp", "generation"):
            meta[key] = cur_meta[key]
        meta["resourceVersion"] = cur_meta["resourceVersion"]
        updated["kind"] = current.get("kind", KINDS[plural])
        if updated == current:
            return copy.deepcopy(updated)
        spec_changed = {
            k: v for k, v in updated.items() if k not in ("metadata", "apiVersion")
        } != {k: v for k, v in current.items() if k not in ("metadata", "apiVersion")}
        if spec_changed:
            meta["generation"] = int(cur_meta["generation"]) + 1
        meta["resourceVersion"] = self._next_rv()
        self._objects[(plural, cur_meta["namespace"], cur_meta["name"])] = updated
        self._record("MODIFIED", plural, updated)
        return copy.deepcopy(updated)

    def _delete(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        obj = self._objects.pop((plural, namespace, name), None)
        if obj is None:
            raise _not_found(plural, name)
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._record("DELETED", plural, obj)
        return copy.deepcopy(obj)

    # ----------------------------------------------------------------------------- HTTP

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors])
        # The client asks for "/apis/", "/api/" and "/version/"; the real server serves both.
        for slash in ("", "/"):
            app.router.add_get(f"/version{slash}", self._version)
            app.router.add_get(f"/api{slash}", self._core_versions)
            app.router.add_get(f"/apis{slash}", self._group_list)
            app.router.add_get(f"/apis/{GROUP}{slash}", self._group)
            app.router.add_route("*", f"/apis/{GROUP}/{{version}}{slash}", self._resource_list)
        app.router.add_route("*", f"/apis/{GROUP}/{{version}}/{{tail:.+}}", self._resources)
        return app

    @web.middleware
    async def _errors(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Any],
    ) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        try:
            response = await handler(request)
            assert isinstance(response, web.StreamResponse)
            return response
        except ApiError as e:
            return web.json_response(e.body(), status=e.code)
        except web.HTTPNotFound:
            return web.json_response(_unknown_resource().body(), status=404)
        except web.HTTPMethodNotAllowed:
            err = ApiError(405, "MethodNotAllowed", "the server does not allow this method")
            return web.json_response(err.body(), status=405)

    def _versions(self) -> list[str]:
        return [v for v, plurals in self._profile.items() if plurals]

    async def _version(self, request: web.Request) -> web.Response:
        major, minor = self.git_version.lstrip("v").split(".")[:2]
        return web.json_response(
            {
                "major": major,
                "minor": minor,
                "gitVersion": self.git_version,
                "gitCommit": "0" * 40,
                "gitTreeState": "clean",
                "buildDate": "2024-01-01T00:00:00Z",
                "goVersion": "go1.21.5",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        )

    async def _core_versions(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self._port}"}
                ],
            }
        )

    def _group_body(self) -> dict[str, Any] | None:
        versions = self._versions()
        if not versions:
            return None
        entries = [{"groupVersion": f"{GROUP}/{v}", "version": v} for v in versions]
        return {"name": GROUP, "versions": entries, "preferredVersion": entries[0]}

    async def _group_list(self, request: web.Request) -> web.Response:
        group = self._group_body()
        return web.json_response(
            {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group] if group else []}
        )

    async def _group(self, request: web.Request) -> web.Response:
        group = self._group_body()
        if group is None:
            raise _unknown_resource()
        return web.json_response({"kind": "APIGroup", "apiVersion": "v1", **group})

    async def _resource_list(self, request: web.Request) -> web.Response:
        version = request.match_info["version"]
        plurals = self._profile.get(version, ())
        if request.method != "GET" or not plurals:
            raise _unknown_resource()
        resources = [
            {
                "name": p,
                "singularName": SINGULAR[p],
                "namespaced": True,
                "kind": KINDS[p],
                "verbs": VERBS,
                "storageVersionHash": base64.b64encode(f"{GROUP}/{p}".encode()).decode()[:12],
            }
            for p in plurals
        ]
        return web.json_response(
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{GROUP}/{version}",
                "resources": resources,
            }
        )

    async def _resources(self, request: web.Request) -> web.StreamResponse:
        version = request.match_info["version"]
        parts = request.match_info["tail"].strip("/").split("/")
        namespace: str | None = None
        if parts[0] == "namespaces" and len(parts) >= 3:
            namespace = parts[1]
            parts = parts[2:]
        if len(parts) not in (1, 2) or parts[0] not in self._profile.get(version, ()):
            raise _unknown_resource()
        plural = parts[0]
        name = parts[1] if len(parts) == 2 else None
        method = request.method
        if name is None:
            if method == "GET":
                if request.query.get("watch", "") in _TRUE:
                    return await self._watch(request, version, plural, namespace)
                return self._list(request, version, plural, namespace)
            if method == "POST" and namespace is not None:
                body = await self._json_body(request)
                obj = self._create(plural, namespace, body)
                return web.json_response(self._as_version(obj, version), status=201)
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
        if namespace is None:
            raise _unknown_resource()
        if method == "GET":
            obj = self._lookup(plural, namespace, name)
            return web.json_response(self._as_version(obj, version))
        if method == "PUT":
            return self._replace(version, plural, namespace, name, await self._json_body(request))
        if method == "PATCH":
            return await self._patch(request, version, plural, namespace, name)
        if method == "DELETE":
            return await self._delete_request(request, version, plural, namespace, name)
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")

    @staticmethod
    async def _json_body(request: web.Request) -> Any:
        raw = await request.read()
        try:
            return json.loads(raw)
        except ValueError as e:
            raise ApiError(400, "BadRequest", f"error decoding request body: {e}") from e

    @staticmethod
    def _as_version(obj: Mapping[str, Any], version: str) -> dict[str, Any]:
        """No conversion: an object read through another served version is just relabelled."""
        out = copy.deepcopy(dict(obj))
        out["apiVersion"] = f"{GROUP}/{version}"
        return out

    def _filter(self, request: web.Request, plural: str, namespace: str | None) -> _Filter:
        return _Filter(
            plural,
            namespace,
            tuple(parse_label_selector(request.query.get("labelSelector", ""))),
            tuple(parse_field_selector(request.query.get("fieldSelector", ""))),
        )

    def _parse_rv(self, raw: str) -> int:
        try:
            rv = int(raw)
        except ValueError:
            raise ApiError(400, "BadRequest", f"invalid resource version: {raw!r}") from None
        if rv < 0:
            raise ApiError(400, "BadRequest", f"invalid resource version: {raw!r}")
        return rv

    def _list(
        self, request: web.Request, version: str, plural: str, namespace: str | None
    ) -> web.Response:
        flt = self._filter(request, plural, namespace)
        q = request.query
        list_rv = self._rv
        start_after: tuple[str, str] | None = None
        if q.get("continue"):
            try:
                token = json.loads(base64.b64decode(q["continue"]))
                list_rv = int(token["rv"])
                start_after = (str(token["ns"]), str(token["name"]))
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, "BadRequest", "continue key is not valid") from None
            if list_rv < self._compacted_rv:
                raise ApiError(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter.",
                )
        elif q.get("resourceVersion") and q.get("resourceVersionMatch") == "Exact":
            rv = self._parse_rv(q["resourceVersion"])
            if rv < self._compacted_rv:
                raise _expired(rv, self._compacted_rv + 1)
        elif q.get("resourceVersionMatch") and not q.get("resourceVersion"):
            raise ApiError(
                422,
                "Invalid",
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            )
        items = sorted(
            ((ns, nm), obj) for (p, ns, nm), obj in self._objects.items() if flt.matches(p, obj)
        )
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
        return web.json_response(
            {
                "apiVersion": f"{GROUP}/{version}",
                "kind": f"{KINDS[plural]}List",
                "metadata": meta,
                "items": [self._as_version(o, version) for _, o in items],
            }
        )

    async def _watch(
        self, request: web.Request, version: str, plural: str, namespace: str | None
    ) -> web.StreamResponse:
        q = request.query
        flt = self._filter(request, plural, namespace)
        bookmarks = q.get("allowWatchBookmarks", "") in _TRUE
        timeout = self.default_watch_timeout
        if q.get("timeoutSeconds"):
            try:
                timeout = float(int(q["timeoutSeconds"]))
            except ValueError:
                raise ApiError(400, "BadRequest", "invalid timeoutSeconds") from None
        raw_rv = q.get("resourceVersion", "")
        rv = self._parse_rv(raw_rv) if raw_rv else 0

        # Everything up to registering the watch runs without awaiting, so no change can fall
        # between the replay and the live stream.
        initial: list[dict[str, Any]] = []
        error: dict[str, Any] | None = None
        if rv == 0:
            initial = [
                {"type": "ADDED", "object": self._as_version(o, version)}
                for (p, _, _), o in sorted(self._objects.items())
                if flt.matches(p, o)
            ]
        elif rv < self._compacted_rv:
            error = {"type": "ERROR", "object": _expired(rv, self._compacted_rv + 1).body()}
        else:
            initial = [
                {"type": e.type, "object": self._as_version(e.obj, version)}
                for e in self._history
                if e.rv > rv and flt.matches(e.plural, e.obj)
            ]
        watch = _Watch(flt, version)
        if error is None:
            self._watches.add(watch)
            self._watch_changed.set()

        response = web.StreamResponse(
            status=200, headers={"Content-Type": "application/json", "Cache-Control": "no-cache"}
        )
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            if error is not None:
                await self._send(response, error)
                await response.write_eof()
                return response
            for event in initial:
                await self._send(response, event)
            end = await self._stream(response, watch, version, bookmarks, timeout)
            if end == _DROP_ABRUPT:
                if request.transport is not None:
                    request.transport.abort()
                return response
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self._watches.discard(watch)
            self._watch_changed.set()
        return response

    async def _stream(
        self,
        response: web.StreamResponse,
        watch: _Watch,
        version: str,
        bookmarks: bool,
        duration: float,
    ) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration
        next_bookmark = loop.time() + self.bookmark_interval
        while True:
            # Queued events go out before anything else: a bookmark carries the latest
            # resourceVersion, so it may only follow every event this watch was handed.
            if watch.queue.empty():
                now = loop.time()
                if now >= deadline:
                    if bookmarks:
                        await self._send(response, self._bookmark(watch, version))
                    return "timeout"
                if bookmarks and now >= next_bookmark:
                    await self._send(response, self._bookmark(watch, version))
                    next_bookmark = loop.time() + self.bookmark_interval
                    continue
                wake = min(deadline, next_bookmark) if bookmarks else deadline
                try:
                    async with asyncio.timeout(wake - now):
                        item = await watch.queue.get()
                except TimeoutError:
                    continue
            else:
                item = watch.queue.get_nowait()
            if isinstance(item, str):
                return item
            await self._send(
                response, {"type": item.type, "object": self._as_version(item.obj, version)}
            )

    def _bookmark(self, watch: _Watch, version: str) -> dict[str, Any]:
        return {
            "type": "BOOKMARK",
            "object": {
                "kind": KINDS[watch.filter.plural],
                "apiVersion": f"{GROUP}/{version}",
                "metadata": {"resourceVersion": str(self._rv), "creationTimestamp": None},
            },
        }

    @staticmethod
    async def _send(response: web.StreamResponse, event: Mapping[str, Any]) -> None:
        await response.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")

    def _replace(
        self, version: str, plural: str, namespace: str, name: str, body: Any
    ) -> web.Response:
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            raise ApiError(400, "BadRequest", "the body of the request must be an object")
        meta = body["metadata"]
        if meta.get("name") not in (None, name):
            raise ApiError(
                400,
                "BadRequest",
                "the name of the object does not match the name on the URL",
            )
        current = self._lookup(plural, namespace, name)
        rv = meta.get("resourceVersion")
        if not rv:
            raise ApiError(
                422,
                "Invalid",
                f'{KINDS[plural]}.{GROUP} "{name}" is invalid: metadata.resourceVersion: '
                "Invalid value: 0x0: must be specified for an update",
                {"name": name, "group": GROUP, "kind": KINDS[plural]},
            )
        if rv != current["metadata"]["resourceVersion"]:
            raise _conflict(plural, name)
        updated = self._store_update(plural, current, copy.deepcopy(body))
        return web.json_response(self._as_version(updated, version))

    async def _patch(
        self, request: web.Request, version: str, plural: str, namespace: str, name: str
    ) -> web.Response:
        content_type = request.content_type
        body = await self._json_body(request)
        current = self._lookup(plural, namespace, name)
        if content_type == "application/json-patch+json":
            try:
                patched = apply_json_patch(current, body)
            except MalformedPatch as e:
                raise ApiError(400, "BadRequest", str(e)) from e
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
                raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
            patched = apply_merge_patch(current, body)
        else:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: application/json-patch+json, application/merge-patch+json, "
                f"application/apply-patch+yaml (got {content_type})",
            )
        if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
            raise ApiError(422, "Invalid", "the patched object must keep its metadata")
        # A resourceVersion set by the patch is a precondition, as on the real server.
        if patched["metadata"].get("resourceVersion") not in (
            None,
            current["metadata"]["resourceVersion"],
        ):
            raise _conflict(plural, name)
        updated = self._store_update(plural, current, patched)
        return web.json_response(self._as_version(updated, version))

    async def _delete_request(
        self, request: web.Request, version: str, plural: str, namespace: str, name: str
    ) -> web.Response:
        current = self._lookup(plural, namespace, name)
        raw = await request.read()
        if raw.strip():
            options = await self._json_body(request)
            pre = options.get("preconditions") if isinstance(options, dict) else None
            if isinstance(pre, dict):
                meta = current["metadata"]
                if pre.get("resourceVersion") not in (None, meta["resourceVersion"]) or (
                    pre.get("uid") not in (None, meta["uid"])
                ):
                    raise _conflict(plural, name)
        deleted = self._delete(plural, namespace, name)
        return web.json_response(self._as_version(deleted, version))
