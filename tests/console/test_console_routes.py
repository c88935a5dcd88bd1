"""The console's routes without a browser: redirect, files, headers, conditional GET."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mep_kubeedge_adapter.console import (
    CONTENT_SECURITY_POLICY,
    add_console_routes,
    is_console_path,
)

SVG_NAMESPACE = "http://www.w3.org/2000/svg"


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    add_console_routes(app)
    async with TestClient(TestServer(app)) as running:
        yield running


async def test_the_bare_path_redirects_relatively(
    client: TestClient[web.Request, web.Application],
) -> None:
    reply = await client.get("/console", allow_redirects=False)
    assert reply.status == 301
    # relative, so /<gwName>/console becomes /<gwName>/console/ behind a gateway
    assert reply.headers["Location"] == "console/"


async def test_the_page_and_its_files(client: TestClient[web.Request, web.Application]) -> None:
    page = await client.get("/console/")
    assert page.status == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    html = await page.text()
    assert 'src="console.js"' in html
    assert 'href="console.css"' in html
    assert set(re.findall(r"\w+://", html)) == set()
    for name, kind in (("console.js", "text/javascript"), ("console.css", "text/css")):
        reply = await client.get(f"/console/{name}")
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith(kind)
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        urls = set(re.findall(r"\w+://[^\s\"'`)]+", await reply.text()))
        assert urls <= {SVG_NAMESPACE}, urls  # a namespace name, never fetched


async def test_only_the_shipped_files_are_served(
    client: TestClient[web.Request, web.Application],
) -> None:
    for path in ("/console/secret.txt", "/console/..%2F__init__.py", "/console/static/index.html"):
        reply = await client.get(path)
        assert reply.status == 404, path


async def test_conditional_get(client: TestClient[web.Request, web.Application]) -> None:
    first = await client.get("/console/console.js")
    etag = first.headers["ETag"]
    again = await client.get("/console/console.js", headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""


def test_console_paths() -> None:
    assert is_console_path("/console")
    assert is_console_path("/console/")
    assert is_console_path("/console/console.js")
    assert not is_console_path("/consoles")
    assert not is_console_path("/kubeedge_devices/v1/devices")
