"""What people see when things go wrong: no microphone or no permission, a reload mid-call,
the server restarting under a call. Each case shows a message and a way forward."""

from __future__ import annotations

import httpx
import pytest

from tests.browser.harness import (
    PASSWORD,
    TONE_A_HZ,
    TONE_B_HZ,
    Server,
    add_contact,
    call_contact,
    close_page,
    hears,
    open_page,
    phase,
    sign_up,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Test-only stand-in for the browser's permission prompt: getUserMedia fails the way a
# browser fails it when the person blocks the microphone or has none.
FAKE_MIC_FAILURE = """
window.__micFailure = 'NotAllowedError';
const realGetUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = (constraints) => window.__micFailure
  ? Promise.reject(new DOMException('test', window.__micFailure))
  : realGetUserMedia(constraints);
"""


async def api_user(base_url: str, username: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        response = await http.post("/v1/users", json={"username": username, "password": PASSWORD})
        assert response.status_code == 201, response.text


async def pair(base_url, browser_a, browser_b, name):
    alice, bob = name("alice"), name("bob")
    a = await open_page(browser_a, base_url)
    b = await open_page(browser_b, base_url)
    await sign_up(a, alice, "Alice")
    await sign_up(b, bob, "Bob")
    await add_contact(a, bob)
    await add_contact(b, alice)
    return (a, alice), (b, bob)


async def test_microphone_blocked_or_missing(server, browser_a, browser_b, name):
    (a, alice), (b, bob) = await pair(server.base_url, browser_a, browser_b, name)
    try:
        await a.add_init_script(FAKE_MIC_FAILURE)
        await a.reload()
        await a.wait_for_selector('#conn[data-status="online"]')

        # calling: the call screen explains, and offers to try again
        await call_contact(a, bob)
        await phase(a, "ended")
        assert "Microphone access is blocked" in await a.inner_text("#call-status")
        await a.evaluate("window.__micFailure = 'NotFoundError'")
        await a.click('#call [data-action="call-again"]')
        await a.wait_for_function(
            "() => document.getElementById('call-status')?.textContent.includes('No microphone')"
        )
        await a.click('#call [data-action="close"]')

        # answering: the incoming screen stays, with the reason; fixed, the answer goes through
        await a.evaluate("window.__micFailure = 'NotAllowedError'")
        await call_contact(b, alice)
        await phase(a, "incoming")
        await a.click('#call [data-action="answer"]')
        await a.wait_for_selector("#call .notice.error")
        assert "Microphone access is blocked" in await a.inner_text("#call .notice.error")
        assert await a.get_attribute("#call", "data-phase") == "incoming"
        await a.evaluate("window.__micFailure = ''")
        await a.click('#call [data-action="answer"]')
        await phase(a, "active")
        await phase(b, "active")
        await hears(a, TONE_B_HZ)
        await b.click('#call [data-action="hangup"]')
        await phase(a, "ended")
        assert not b.errors, b.errors
    finally:
        await close_page(a)
        await close_page(b)


async def test_reload_mid_call_says_what_happened(server, browser_a, browser_b, name):
    # A reload closes the page's peer connection; the server takes that as the party leaving
    # and ends the call. After the reload the page finds the call it was in (sessionStorage +
    # GET /v1/calls/{id}) and says it ended, rather than silently forgetting it.
    (a, _alice), (b, bob) = await pair(server.base_url, browser_a, browser_b, name)
    try:
        await call_contact(a, bob)
        await phase(b, "incoming")
        await b.click('#call [data-action="answer"]')
        await hears(a, TONE_B_HZ)
        await a.reload()
        await a.wait_for_selector("#toasts .toast")
        assert "Your call with Bob ended when the page was reloaded" in await a.inner_text(
            "#toasts"
        )
        assert await a.locator("#call").is_hidden()
        await phase(b, "ended")
    finally:
        await close_page(a)
        await close_page(b)


async def test_server_restart_mid_call(tmp_path, browser_a, browser_b, name):
    server = Server(tmp_path / "data")
    await server.start()
    a = b = None
    try:
        (a, _alice), (b, bob) = await pair(server.base_url, browser_a, browser_b, name)
        await call_contact(a, bob)
        await phase(b, "incoming")
        await b.click('#call [data-action="answer"]')
        await hears(a, TONE_B_HZ)
        await hears(b, TONE_A_HZ)

        assert await server.stop() == 0  # SIGTERM: the server ends its calls and exits
        for page in (a, b):
            # the page says the server is gone, on the app and on the call screen
            await page.wait_for_selector("#banner:not([hidden])")
            assert "Lost the connection to the server" in await page.inner_text("#banner")
            await page.wait_for_selector("#banner button")  # "Reconnect now"
            await page.wait_for_selector("#call .notice.warn")
            assert "reconnecting" in await page.inner_text("#call .call-notices")

        await server.start()  # same port, same data: sessions still hold
        for page in (a, b):
            # reconnected (with backoff), the page asks how its call stands: ended, failed
            await page.wait_for_selector('#conn[data-status="online"]', timeout=45000)
            await page.wait_for_selector("#banner", state="hidden")
            await phase(page, "ended")
            assert "cut off" in await page.inner_text("#call-status")

        # and calling works again, audio both ways
        await a.click('#call [data-action="call-again"]')
        await phase(b, "incoming", timeout=30000)
        await b.click('#call [data-action="answer"]')
        await hears(a, TONE_B_HZ)
        await hears(b, TONE_A_HZ)
        await a.click('#call [data-action="hangup"]')
        await phase(b, "ended")
    finally:
        if a is not None:
            await close_page(a)
        if b is not None:
            await close_page(b)
        await server.stop()


async def test_expired_session_returns_to_sign_in_with_a_message(server, browser_a, name):
    page = await open_page(browser_a, server.base_url)
    try:
        await sign_up(page, name("carol"))
        # the stored token stops being valid (e.g. it expired): the next load says so
        await page.evaluate(
            """() => {
                const session = JSON.parse(sessionStorage.getItem('chorus.session'));
                session.token = 'not-a-valid-token';
                sessionStorage.setItem('chorus.session', JSON.stringify(session));
            }"""
        )
        await page.reload()
        await page.wait_for_selector("#auth-error")
        assert "session has expired" in await page.inner_text("#auth-error")
        assert await page.evaluate("sessionStorage.getItem('chorus.session')") is None
    finally:
        await close_page(page)


async def test_language_follows_the_browser_and_can_be_switched(server, browser_a, name):
    page = await open_page(browser_a, server.base_url, locale="zh-CN")
    try:
        await page.wait_for_selector("#username")
        assert await page.get_attribute("html", "lang") == "zh-CN"
        assert await page.inner_text("#tab-signin") == "登录"
        await sign_up(page, name("dan"))
        assert await page.inner_text("#tab-contacts") == "联系人"
        await page.select_option("#app-lang", "en")
        await page.wait_for_function(
            "() => document.getElementById('tab-contacts').textContent === 'Contacts'"
        )
        assert await page.get_attribute("html", "lang") == "en"
        await page.reload()  # the choice is remembered
        await page.wait_for_selector('#conn[data-status="online"]')
        assert await page.inner_text("#tab-history") == "History"
    finally:
        await close_page(page)
