"""The device console in a real browser (Debian's Chromium) against the demo chain.

Every wait is on a DOM condition or on the adapter's state, never on time.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import aiohttp
from playwright.async_api import Browser, ConsoleMessage, Page, Request, expect

from mep_kubeedge_adapter.notify.subscriptions import SubscriptionService
from tests.console.conftest import ARTIFACTS, GatewayProxy, StackFactory

WAIT_MS = 20_000
DEMO_DEVICES = ("default/pump-1", "default/thermo-1", "default/valve-1")
TOKEN_KEY = "mka-console-token"


def device(device_id: str) -> str:
    return f'article[data-device="{device_id}"]'


def row(device_id: str, prop: str) -> str:
    return f'{device(device_id)} tr[data-prop="{prop}"]'


class PageLog:
    """What the page did: requests and anything that went wrong in it (CSP included)."""

    def __init__(self, page: Page) -> None:
        self.requests: list[Request] = []
        self.errors: list[str] = []
        page.on("request", lambda request: self.requests.append(request))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        # Chromium logs every 4xx answer; the tests look at the ones they expect themselves.
        expected = "Failed to load resource: the server responded with a status of 4"
        if message.type == "error" and not message.text.startswith(expected):
            self.errors.append(message.text)


async def streams(page: Page) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await page.evaluate("window.mkaConsole.streams()")
    return result


async def wait_streams(page: Page, condition: Callable[[dict[str, Any]], bool]) -> None:
    """Wait until the page's three subscription streams all satisfy ``condition``.

    Playwright's ``wait_for_function`` evaluates strings with ``eval``, which the console's
    Content-Security-Policy forbids; ``evaluate`` is not affected.
    """
    async with asyncio.timeout(WAIT_MS / 1000):
        while True:
            current = await streams(page)
            if len(current) == 3 and all(condition(s) for s in current):
                return
            await asyncio.sleep(0.05)


async def wait_deleted(subscriptions: SubscriptionService, ids: set[str]) -> None:
    """Wait until none of ``ids`` is a subscription of the adapter any more."""
    async with asyncio.timeout(WAIT_MS / 1000):
        while True:
            left = {s.id for s in await subscriptions.list()} & ids
            if not left:
                return
            await asyncio.sleep(0.05)


async def refusal_detail(base: str, device_id: str, prop: str, value: str, token: str = "") -> str:
    """The problem detail the API gives for this write (what the page must show)."""
    headers = {"Content-Type": "application/merge-patch+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{base}/kubeedge_devices/v1/devices/{device_id}/twin"
    async with (
        aiohttp.ClientSession() as session,
        session.patch(url, json={"desired": {prop: value}}, headers=headers) as reply,
    ):
        assert reply.status == 400, await reply.text()
        body = await reply.json(content_type=None)
        detail: str = body["detail"]
        return detail


async def write_from_page(page: Page, device_id: str, prop: str, value: str) -> None:
    target = page.locator(row(device_id, prop))
    await target.locator('[data-role="value"]').fill(value)
    await target.locator('[data-role="set"]').click()


async def test_console_shows_live_devices_and_writes(
    demo_stack: StackFactory, browser: Browser
) -> None:
    stack = await demo_stack()
    context = await browser.new_context(viewport={"width": 1440, "height": 1000})
    page = await context.new_page()
    log = PageLog(page)

    await page.goto(f"{stack.api_url}/console/")
    for device_id in DEMO_DEVICES:
        await expect(page.locator(device(device_id))).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)
    await expect(page.locator("#node")).to_have_text("node demo-node")
    thermo = page.locator(device("default/thermo-1"))
    await expect(thermo.locator(".state")).to_have_text("online", timeout=WAIT_MS)
    await expect(page.locator(f"{row('default/thermo-1', 'temperature')} .type")).to_have_text(
        "int"
    )

    # A value the simulated device changes shows up without a reload.
    await page.evaluate("window.notReloaded = true")
    humidity = page.locator(f'{row("default/thermo-1", "humidity")} [data-role="reported"]')
    await expect(humidity).to_have_text(re.compile(r"^-?\d+(\.\d+)?$"), timeout=WAIT_MS)
    first = await humidity.inner_text()
    await expect(humidity).not_to_have_text(first, timeout=WAIT_MS)
    await expect(page.locator("#activity")).to_contain_text("humidity")
    assert await page.evaluate("window.notReloaded === true")

    # Sparklines for numeric properties, drawn from the values seen in the page.
    sparkline = page.locator(f"{row('default/thermo-1', 'humidity')} svg.sparkline")
    await expect(sparkline).to_have_attribute(
        "data-points", re.compile(r"^([3-9]|\d{2,})$"), timeout=WAIT_MS
    )
    await expect(page.locator(f"{row('default/thermo-1', 'humidity')} polyline")).to_have_count(1)
    await expect(page.locator(f"{row('default/valve-1', 'open')} svg polyline")).to_have_count(0)

    # The status strip: readiness, EventBus, kube source, MEP, notification counters.
    await expect(page.locator("#st-ready")).to_have_text("ready", timeout=WAIT_MS)
    await expect(page.locator("#st-eventbus")).to_have_text("EventBus connected")
    await expect(page.locator("#st-kube")).to_have_text("kube: none")
    await expect(page.locator("#st-mep")).to_have_text(
        re.compile(r"^MEP registered \d+/\d+$"), timeout=WAIT_MS
    )
    delivered = page.locator('#st-counters [data-channel="websocket"] [data-outcome="delivered"]')
    await expect(delivered).to_have_text(re.compile(r"^delivered [1-9]\d*$"), timeout=WAIT_MS)

    # A desired write from the page: sent with the twin's ETag, accepted, then converged.
    pump = page.locator(row("default/pump-1", "speed"))
    async with page.expect_request(lambda r: r.method == "PATCH") as patch_info:
        await write_from_page(page, "default/pump-1", "speed", "1500")
    patch = await patch_info.value
    assert re.fullmatch(r'"[0-9a-f]+"', patch.headers["if-match"])
    assert patch.headers["content-type"] == "application/merge-patch+json"
    await expect(pump.locator('[data-role="desired"]')).to_have_text("1500", timeout=WAIT_MS)
    await expect(pump.locator('[data-role="mismatch"]')).to_be_visible()
    await expect(pump.locator('[data-role="mismatch"]')).to_contain_text("≠ reported for")
    await expect(pump.locator('[data-role="reported"]')).to_have_text("1500", timeout=WAIT_MS)
    await expect(pump.locator('[data-role="result"]')).to_contain_text("converged", timeout=WAIT_MS)
    await expect(pump.locator('[data-role="mismatch"]')).to_be_hidden()
    assert stack.devices["default/pump-1"].applied["speed"] == "1500"

    # An invalid value: the refusal's detail is shown and nothing is written.
    detail = await refusal_detail(stack.api_url, "default/pump-1", "speed", "abc")
    await write_from_page(page, "default/pump-1", "speed", "abc")
    result = pump.locator('[data-role="result"]')
    await expect(result).to_have_text(f"400: {detail}", timeout=WAIT_MS)
    await expect(result).to_have_attribute("data-level", "error")
    await expect(pump.locator('[data-role="desired"]')).to_have_text("1500")

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)

    # Only the adapter itself was asked for anything.
    origins = {re.sub(r"^(\w+://[^/]+).*$", r"\1", r.url) for r in log.requests}
    assert origins <= {stack.api_url, "ws://127.0.0.1:" + str(stack.adapter.api_port)}, origins
    assert log.errors == []

    # Leaving the page removes its subscriptions.
    ids = {s["id"] for s in await streams(page)}
    assert len(ids) == 3
    await page.goto("about:blank")
    await wait_deleted(stack.adapter.subscriptions, ids)
    await context.close()


async def test_console_behind_a_gateway_prefix_with_bearer_tokens(
    demo_stack: StackFactory, browser: Browser
) -> None:
    stack = await demo_stack(auth="jwt")
    token = await stack.mep_token()
    async with GatewayProxy(stack.api_url, "edge-gw/mka") as gw:
        context = await browser.new_context(viewport={"width": 1440, "height": 900})
        page = await context.new_page()
        log = PageLog(page)

        # The relative redirect keeps the stripped prefix.
        await page.goto(f"{gw.url}/console")
        assert page.url == f"{gw.url}/console/"

        # No token yet: the page asks for one, once.
        await expect(page.locator("#auth")).to_be_visible(timeout=WAIT_MS)
        await page.locator("#auth-token").fill(token)
        await page.locator("#auth-save").click()
        for device_id in DEMO_DEVICES:
            await expect(page.locator(device(device_id))).to_be_visible(timeout=WAIT_MS)
        await expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)
        await expect(page.locator("#auth")).to_be_hidden()
        assert await page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") == token

        # The token survives a reload (session storage): no second prompt.
        await page.reload()
        await expect(page.locator(device("default/pump-1"))).to_be_visible(timeout=WAIT_MS)
        await expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)
        await expect(page.locator("#auth")).to_be_hidden()

        # The network drops the websockets: the page reconnects to the same subscriptions.
        before = await streams(page)
        assert await gw.drop_websockets() == 3
        await wait_streams(page, lambda s: s["open"] and s["connects"] >= 2)
        after = await streams(page)
        assert {s["id"] for s in after} == {s["id"] for s in before}
        await expect(page.locator("#live")).to_have_text("live")

        # The subscriptions disappear on the adapter: the page subscribes again.
        old_ids = {s["id"] for s in after}
        for subscription_id in old_ids:
            await stack.adapter.subscriptions.delete(subscription_id)
        await wait_streams(page, lambda s: s["open"] and s["id"] not in old_ids)

        # Notifications flow on the new subscriptions: a write converges in the page.
        valve = page.locator(row("default/valve-1", "open"))
        await write_from_page(page, "default/valve-1", "open", "true")
        await expect(valve.locator('[data-role="reported"]')).to_have_text("true", timeout=WAIT_MS)
        await expect(valve.locator('[data-role="result"]')).to_contain_text(
            "converged", timeout=WAIT_MS
        )

        # A refusal through the gateway, with the token.
        detail = await refusal_detail(stack.api_url, "default/valve-1", "open", "half open", token)
        await write_from_page(page, "default/valve-1", "open", "half open")
        await expect(valve.locator('[data-role="result"]')).to_have_text(
            f"400: {detail}", timeout=WAIT_MS
        )

        # Every request stayed under the gateway prefix (relative URLs only).
        assert gw.paths
        assert all(path.startswith(gw.prefix + "/") for path in gw.paths), gw.paths
        gw_origin = f"127.0.0.1:{gw.port}"
        assert all(gw_origin in r.url for r in log.requests), [r.url for r in log.requests]
        assert log.errors == []

        ids = {s["id"] for s in await streams(page)}
        await page.goto("about:blank")
        await wait_deleted(stack.adapter.subscriptions, ids)
        await context.close()
