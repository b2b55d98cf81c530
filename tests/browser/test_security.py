"""The page's defences: a strict CSP and friends on every web response, API routes untouched,
no inline script, and user text (display names) rendered as text, never as markup."""

from __future__ import annotations

import re

import httpx
import pytest

from api.routes.web import WEB_DIR
from tests.browser.harness import (
    add_contact,
    call_contact,
    close_page,
    open_page,
    phase,
    sign_up,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

XSS = '<img src=x onerror="window.__xss=1">'


async def test_web_responses_carry_a_strict_policy(server):
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        for path in ("/", "/app/js/main.js", "/app/css/app.css", "/app/i18n/zh-CN.json"):
            response = await http.get(path)
            assert response.status_code == 200, path
            csp = response.headers["content-security-policy"]
            directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
            assert directives["default-src"] == "'self'"
            assert directives["script-src"] == "'self'"
            assert directives["object-src"] == "'none'"
            assert directives["frame-ancestors"] == "'none'"
            assert "require-trusted-types-for" in directives
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"
        assert (
            (await http.get("/app/js/main.js"))
            .headers["content-type"]
            .startswith("text/javascript")
        )
        # conditional requests are cheap
        etag = (await http.get("/app/js/main.js")).headers["etag"]
        again = await http.get("/app/js/main.js", headers={"If-None-Match": etag})
        assert again.status_code == 304
        # the API and its documents are untouched by the web routes
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert "/v1/calls" in (await http.get("/openapi.json")).json()["paths"]
        assert "/" not in (await http.get("/openapi.json")).json()["paths"]
        assert (await http.get("/docs")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200
        assert (await http.get("/v1/me")).json()["error"]["code"] == "unauthorized"
        # no escape from the web directory, missing files answer in the API's error shape
        for path in ("/app/../pyproject.toml", "/app/%2e%2e/routes/web.py", "/app/nope.js"):
            response = await http.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found"


async def test_no_inline_script_or_handlers_in_the_sources():
    html = (WEB_DIR / "index.html").read_text()
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag, tag
    assert not re.search(r"\son[a-z]+\s*=", html)
    for path in WEB_DIR.rglob("*.js"):
        source = path.read_text()
        assert "innerHTML" not in source and "outerHTML" not in source, path
        assert "insertAdjacentHTML" not in source and "document.write" not in source, path
        assert "eval(" not in source and "new Function" not in source, path


async def test_display_name_with_markup_is_shown_as_text(server, browser_a, browser_b, name):
    mallory, victim = name("mallory"), name("victim")
    m = await open_page(browser_a, server.base_url)
    v = await open_page(browser_b, server.base_url)
    try:
        await sign_up(m, mallory, XSS)
        await sign_up(v, victim)
        await add_contact(v, mallory, "<b>group</b>")
        await add_contact(m, victim)
        row = v.locator(f'li.contact[data-username="{mallory}"]')
        assert await row.locator(".row-title").inner_text() == XSS
        assert await v.locator("#contact-list img").count() == 0
        assert "<b>group</b>" in await v.text_content("#contact-list")
        assert await v.locator("#contact-list b").count() == 0
        assert await m.inner_text("#me-name") == XSS

        # the same name on the incoming call screen
        await call_contact(m, victim)
        await phase(v, "incoming")
        assert await v.inner_text("#call-name") == XSS
        assert await v.locator("#call img").count() == 0
        await v.click('#call [data-action="decline"]')
        await phase(m, "ended")

        # and in the history
        await v.click('#call [data-action="close"]')
        await v.click("#tab-history")
        await v.locator("li.call-row").first.wait_for()
        assert XSS in await v.locator("li.call-row").first.inner_text()
        assert await v.locator("#history-list img").count() == 0

        assert await m.evaluate("window.__xss") is None
        assert await v.evaluate("window.__xss") is None
        assert not m.errors and not v.errors, (m.errors, v.errors)  # incl. CSP violations
    finally:
        await close_page(m)
        await close_page(v)
