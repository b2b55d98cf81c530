"""The info hotline from a browser: dial 114, hear its spoken menu, move through it with the
keypad; and operator mode: an available operator's page rings with the menu path the caller
took, answers, and both hear each other."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.browser.harness import (
    ADMIN_KEY,
    TONE_A_HZ,
    TONE_B_HZ,
    close_page,
    hears,
    open_page,
    phase,
    sign_up,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def hotline_record(base_url: str, call_id: str, timeout: float = 15) -> dict:
    """The hotline's record of a call, once the call has ended (admin key)."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with (
        httpx.AsyncClient(base_url=base_url, headers=headers) as http,
        asyncio.timeout(timeout),
    ):
        while True:
            response = await http.get("/v1/hotlines/114/calls", params={"limit": 50})
            response.raise_for_status()
            found = [r for r in response.json() if r["call_id"] == call_id]
            if found and found[0]["ended_at"]:
                return found[0]
            await asyncio.sleep(0.2)


async def hears_speech(page, timeout: float = 20000) -> None:
    """The call screen's analyser hears something loud in the voice band."""
    await page.wait_for_function(
        """() => {
            const d = document.getElementById('call')?.dataset || {};
            const hz = Number(d.remoteHz);
            return Number(d.remoteDb) > -60 && hz >= 80 && hz <= 4000;
        }""",
        timeout=timeout,
        polling=100,
    )


async def dial_114(page) -> str:
    await page.click("#tab-hotline")
    await page.click('li.hotline[data-number="114"] [data-action="dial"]')
    await phase(page, "active")  # the menu answers at once
    return await page.get_attribute("#call", "data-call-id")


async def test_hotline_menu_by_keypad(server, browser_b, name):
    page = await open_page(browser_b, server.base_url)
    try:
        await sign_up(page, name("hana"))
        await page.click("#tab-hotline")
        row = page.locator('li.hotline[data-number="114"]')
        assert "For the weather, press 1" in await row.inner_text()  # what the menu says
        call_id = await dial_114(page)
        assert "Hotline 114" in await page.inner_text("#call-name")
        await page.wait_for_selector("#call .keypad")  # open from the start for a hotline
        await hears_speech(page)  # the spoken welcome

        # 1: weather; then the area code 010 and # (typed on the keyboard this time)
        await page.click('#call [data-action="key-1"]')
        for key in "010#":
            await page.keyboard.press(key)
        await page.wait_for_function(
            "() => document.querySelector('#call .keypad-display')?.textContent === '1010#'"
        )
        await page.wait_for_selector('#call[data-dtmf-pending="0"]')  # all accepted
        assert await page.locator("#call .notice.warn").count() == 0  # no key was refused
        await hears_speech(page)  # the forecast (or the prompts) keep speaking
        await page.click('#call [data-action="hangup"]')
        await phase(page, "ended")

        record = await hotline_record(server.base_url, call_id)
        assert record["path"][:4] == ["main", "main:1", "weather", "weather:collect"], record
        assert not page.errors, page.errors
    finally:
        await close_page(page)


async def test_operator_takes_a_hotline_caller(server, browser_a, browser_b, name):
    agent = await open_page(browser_a, server.base_url, raw_microphone=True)
    caller = await open_page(browser_b, server.base_url, raw_microphone=True)
    try:
        await asyncio.gather(sign_up(agent, name("olga"), "Olga"), sign_up(caller, name("carl")))

        # Olga becomes an operator of the hotline's queue and goes available
        await agent.click("#tab-hotline")
        assert await agent.input_value("#queue-name") == "operators"
        await agent.click("#queue-join button[type=submit]")
        await agent.wait_for_selector('#agent-state[data-state="away"]')
        await agent.click('#agent-toggle [data-state="available"]')
        await agent.wait_for_selector('#agent-state[data-state="available"]')
        toggle = agent.locator('#agent-toggle [data-state="available"]')
        assert await toggle.get_attribute("aria-pressed") == "true"
        # a reload keeps it (the server has the state; the page asks for it)
        await agent.reload()
        await agent.wait_for_selector('#agent-state[data-state="available"]')

        # Carl dials 114 and presses 0 for an operator
        call_id = await dial_114(caller)
        await hears_speech(caller)
        await caller.click('#call [data-action="key-0"]')

        # Olga's page rings with what Carl did in the menu
        await phase(agent, "incoming")
        assert await agent.get_attribute("#call", "data-call-id") == call_id
        context = await agent.inner_text("#call-context")
        assert "114" in context and "operators" in context
        assert await agent.inner_text("#call-context-path") == "main"
        assert "queue operators" in (await agent.inner_text("#call .call-kind")).lower()
        await agent.click('#call [data-action="answer"]')
        await phase(agent, "active")
        await hears(agent, TONE_B_HZ)  # Olga hears Carl's microphone
        await hears(caller, TONE_A_HZ)  # and Carl hears Olga's
        await agent.wait_for_selector('#agent-state[data-state="on_call"]', state="attached")

        await caller.click('#call [data-action="hangup"]')
        await phase(agent, "ended")
        record = await hotline_record(server.base_url, call_id)
        assert record["outcome"] == "operator" and record["queue"] == "operators", record
        assert not agent.errors and not caller.errors, (agent.errors, caller.errors)
    finally:
        await close_page(agent)
        await close_page(caller)
