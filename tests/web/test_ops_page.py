"""GET /ops, the on-call page, in a real headless Chromium (Debian's `chromium` package,
driven by Playwright with ``executable_path``; never a downloaded browser).

The browser tests fail, not skip, when Chromium or Playwright is missing: CI installs
them (`apt-get install -y chromium chromium-driver`, `pip install -e '.[dev]'`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000
QUEUE_FIELDS = {"ready": "ready", "delayed": "delayed", "dead_lettered": "dead"}


# --- the page itself, without a browser -------------------------------------------------------


async def test_page_loads_without_a_token(api: Any) -> None:
    resp = await api.client.get("/ops")
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/html"
    html = await resp.text()
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    for tag in ("script", "style"):  # only the page's own inline code runs
        for source in re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.DOTALL):
            digest = base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in csp, tag
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_page_has_no_external_resources_and_no_html_injection(api: Any) -> None:
    html = await (await api.client.get("/ops")).text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "external resource"
    assert "@import" not in html and "url(" not in html
    assert "innerHTML" not in html and "outerHTML" not in html and "insertAdjacentHTML" not in html
    assert "document.write" not in html and "eval(" not in html


# --- in Chromium --------------------------------------------------------------------------------


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A fresh headless Chromium; fails the test (never skips) when it cannot start."""
    try:
        from playwright.async_api import async_playwright
    except ImportError as exc:
        pytest.fail(
            f"Playwright is not installed ({exc}); `pip install -e '.[dev]'` (playwright>=1.40). "
            "Do not run `playwright install`: the tests use the system Chromium.",
            pytrace=False,
        )
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing; install it with `apt-get install -y chromium chromium-driver`",
            pytrace=False,
        )
    async with async_playwright() as p:
        try:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        except Exception as exc:
            pytest.fail(f"could not start {CHROMIUM} headless: {exc}", pytrace=False)
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def ops_page(api: Any, token: str | None) -> AsyncIterator[Any]:
    """The /ops page in a new browser context, with ``token`` entered (if any)."""
    async with chromium() as browser:
        context = await browser.new_context()
        page = await context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on(
            "console",
            lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None,
        )
        server = api.client.server
        await page.goto(f"http://{server.host}:{server.port}/ops")
        assert await page.get_attribute("body", "data-state") == "need-token"
        if token is not None:
            await page.fill("#token", token)
            await page.click("#token-save")
        yield page
        await context.close()
        # 401/403 answers are logged by Chromium as failed resources; nothing else may go wrong
        unexpected = [p for p in problems if "status of 401" not in p and "status of 403" not in p]
        assert not unexpected, unexpected


async def wait_for(page: Any, predicate: str, arg: Any = None) -> None:
    await page.wait_for_function(predicate, arg=arg, timeout=TIMEOUT_MS)


async def refreshed(page: Any, times: int = 1) -> None:
    """Wait for ``times`` more completed refreshes of the page."""
    now = int(await page.get_attribute("body", "data-refreshes") or 0)
    await wait_for(page, "n => Number(document.body.dataset.refreshes) >= n", now + times)


async def cell(page: Any, selector: str) -> str:
    return (await page.text_content(selector) or "").strip()


async def in_thread(fn: Callable[[], Any]) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn)


@pytest.mark.e2e
async def test_page_shows_the_numbers_of_the_api(api: Any, stub_worker: Any) -> None:
    await in_thread(stub_worker.pause)  # accepted work stays queued
    try:
        status, _ = await api.call("POST", "/v1/keys", json={"name": "solo", "key_spec": "AES_256"})
        assert status == 202
        ops = [
            {"command": "create_key", "params": {"name": f"b{i}", "key_spec": "AES_256"}} for i in range(3)
        ]
        status, answer = await api.call("POST", "/v1/batches", json={"operations": ops})
        assert status == 202, answer
        batch_id = answer["batch"]["id"]

        async with ops_page(api, api.admin) as page:
            await wait_for(page, "() => document.body.dataset.state === 'ok'")
            await refreshed(page)  # a refresh that started after the work was queued
            status, view = await api.call("GET", "/v1/ops/queues", api.admin)
            assert status == 200, view
            create = next(q for q in view["queues"] if q["name"] == "create")
            assert create["ready"] >= 4, view  # the numbers compared below are not all zero
            await refreshed(page)

            assert await page.locator("#queues tbody tr[data-queue]").count() == len(view["queues"])
            for queue in view["queues"]:
                row = f'#queues tr[data-queue="{queue["name"]}"]'
                for field, cls in QUEUE_FIELDS.items():
                    assert await cell(page, f"{row} td.{cls}") == str(queue[field]), (queue, field)
                oldest = await page.get_attribute(f"{row} td.oldest", "data-value")
                assert (oldest is None) == (queue["oldest_ready_age_s"] is None), queue
            assert await cell(page, '#queues tr[data-queue="create"] td.ready') == str(create["ready"])
            for name, value in view["timers"].items():
                shown = await page.get_attribute(f'#timers [data-timer="{name}"]', "data-value")
                assert shown == ("" if value is None else str(value)), name
            if not view["workers"]:  # the stub broker has no heartbeats
                assert "No live workers" in await cell(page, "#workers tbody")

            batch = f'#batches tr[data-batch="{batch_id}"]'
            assert await cell(page, f"{batch} td.total") == "3"
            assert await cell(page, f"{batch} td.queued") == "3"
            assert await cell(page, f"{batch} td.project") == "alpha"
            assert await page.is_hidden("#auth-error") and await page.is_hidden("#refresh-error")

            # the token stays in this tab (sessionStorage) across a reload
            await page.reload()
            await wait_for(page, "() => document.body.dataset.state === 'ok'")
            assert await page.evaluate("() => sessionStorage.getItem('kms.ops.token')") == api.admin
            await page.click("#token-forget")
            assert await page.get_attribute("body", "data-state") == "need-token"
    finally:
        await in_thread(stub_worker.resume)
    await api.settle()


@pytest.mark.e2e
async def test_non_admin_tokens_see_why(api: Any) -> None:
    async with ops_page(api, api.member) as page:
        await wait_for(page, "() => document.body.dataset.state === 'forbidden'")
        message = await cell(page, "#auth-error")
        assert await page.get_attribute("#auth-error", "data-status") == "403"
        assert "403" in message and "admin" in message, message
        assert await page.is_visible("#auth-error")
        assert await page.locator("#queues tbody tr[data-queue]").count() == 0

        await page.fill("#token", "not-a-token")  # a wrong token: 401, said so
        await page.click("#token-save")
        await wait_for(page, "() => document.body.dataset.state === 'unauthorized'")
        assert "401" in await cell(page, "#auth-error")

        await page.fill("#token", api.admin)  # the right one: the message goes away
        await page.click("#token-save")
        await wait_for(page, "() => document.body.dataset.state === 'ok'")
        assert await page.is_hidden("#auth-error")
        assert await page.locator("#queues tbody tr[data-queue]").count() > 0

        await page.fill("#token", api.other)  # back to a member: the admin's numbers go away
        await page.click("#token-save")
        await wait_for(page, "() => document.body.dataset.state === 'forbidden'")
        assert await page.locator("#queues tbody tr[data-queue]").count() == 0


def _fault(*_: Any) -> Any:
    raise RuntimeError("the disk is on fire")


@pytest.mark.e2e
async def test_requeue_button(api: Any, stub_worker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import engine
    from workers.keys import create_key

    # A poisoned message: a create whose actor fails, sent without retries.
    await in_thread(stub_worker.pause)
    try:
        status, answer = await api.call("POST", "/v1/keys", json={"name": "p", "key_spec": "AES_256"})
        assert status == 202
        op_id, key_id = answer["operation"]["id"], answer["key"]["id"]
        api.broker.flush_all()  # drop the normal message (retried for a minute)
        monkeypatch.setattr(engine, "create_in_bulk", _fault)
        create_key.send_with_options(args=(op_id,), max_retries=0)
    finally:
        await in_thread(stub_worker.resume)
    for _ in range(200):
        if api.broker.dead_letters_by_queue["create"]:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the poisoned message never reached the dead letters")
    monkeypatch.undo()  # the fault is fixed

    async with ops_page(api, api.admin) as page:
        row = f'#dead-letters tr[data-queue="create"]:has(td.operation_id:text-is("{op_id}"))'
        await page.wait_for_selector(row)
        assert await cell(page, f"{row} td.key_id") == key_id
        assert await cell(page, f"{row} td.actor") == "create_key"
        assert await page.get_attribute(f"{row} td.error", "data-code") == "InternalError"
        assert "disk" not in await cell(page, "#dead-letters")  # no exception text
        assert await cell(page, '#queues tr[data-queue="create"] td.dead') == "1"
        message_id = await page.get_attribute(row, "data-message-id")

        async with page.expect_response(
            lambda r: (
                r.request.method == "POST" and r.url.endswith(f"/v1/ops/dead-letters/{message_id}/requeue")
            )
        ) as info:
            await page.click(f"{row} button.requeue")
        response = await info.value
        assert response.status == 200 and (await response.json())["operation_id"] == op_id
        assert await response.request.header_value("authorization") == f"Bearer {api.admin}"

        await page.wait_for_selector(row, state="detached")
        assert message_id in await cell(page, "#action-message")
        dead = '#queues tr[data-queue="create"] td.dead'
        await wait_for(page, "sel => document.querySelector(sel).textContent === '0'", dead)

    await api.settle()
    _, op = await api.call("GET", f"/v1/operations/{op_id}")
    assert op["status"] == "SUCCEEDED", op
    _, key = await api.call("GET", f"/v1/keys/{key_id}")
    assert key["state"] == "ACTIVE"
