"""Two real browsers call each other through the server and prove, by the spectrum of what
each page's WebAudio analyser hears, that the audio crossed in both directions."""

from __future__ import annotations

import pytest

from tests.browser.harness import (
    RINGBACK_HZ,
    TONE_A_HZ,
    TONE_B_HZ,
    add_contact,
    call_contact,
    close_page,
    hears,
    open_page,
    phase,
    sign_up,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def pair(server, browser_a, browser_b, name):
    """Alice (browser A, 660 Hz) and Bob (browser B, 1040 Hz), contacts of each other."""
    alice, bob = name("alice"), name("bob")
    page_a = await open_page(browser_a, server.base_url)
    page_b = await open_page(browser_b, server.base_url)
    await sign_up(page_a, alice, "Alice A.")
    await sign_up(page_b, bob, "Bob B.")
    await add_contact(page_a, bob, "friends")
    await add_contact(page_b, alice)
    return (page_a, alice), (page_b, bob)


async def test_call_both_hear_each_other_then_hang_up(server, browser_a, browser_b, name):
    (a, alice), (b, bob) = await pair(server, browser_a, browser_b, name)
    try:
        await call_contact(a, bob)
        await phase(b, "incoming")
        assert await b.get_attribute("#call", "data-ringing") == "true"  # the ring sound
        assert "Alice A." in await b.inner_text("#call-name")
        # the caller hears the ringback from the server's media while it rings
        await phase(a, "ringing")
        await hears(a, RINGBACK_HZ, timeout=15000)

        await b.click('#call [data-action="answer"]')
        await phase(a, "active")
        await phase(b, "active")
        assert await b.get_attribute("#call", "data-ringing") == "false"
        await hears(a, TONE_B_HZ)  # Alice hears Bob's microphone
        await hears(b, TONE_A_HZ)  # Bob hears Alice's microphone

        # the quality indicator fills in from getStats()
        await a.wait_for_function(
            "() => document.querySelector('#call .quality')?.dataset.grade === 'good'",
            timeout=15000,
        )
        quality = await a.inner_text("#call .quality-text")
        assert "loss" in quality and "jitter" in quality, quality

        # keypad: Bob's digits reach Alice as call.dtmf events
        await b.click('#call [data-action="keypad"]')
        await b.click('#call [data-action="key-5"]')
        await b.keyboard.press("#")
        await a.wait_for_function(
            "() => document.getElementById('call').textContent.includes('5#')", timeout=10000
        )

        # mute: Bob stops hearing Alice's tone
        await a.click('#call [data-action="mute"]')
        assert await a.get_attribute('#call [data-action="mute"]', "aria-pressed") == "true"
        await b.wait_for_function(
            f"""() => {{
                const d = document.getElementById('call').dataset;
                return Math.abs(Number(d.remoteHz) - {TONE_A_HZ}) > 15 || Number(d.remoteDb) < -75;
            }}""",
            timeout=10000,
            polling=200,
        )
        await a.click('#call [data-action="mute"]')
        await hears(b, TONE_A_HZ)

        await a.click('#call [data-action="hangup"]')
        await phase(a, "ended")
        await phase(b, "ended")
        assert "ended" in (await b.inner_text("#call-status")).lower()

        # both histories show the answered call with its duration
        await b.click('#call [data-action="close"]')
        await b.click("#tab-history")
        row = b.locator("li.call-row").first
        await row.wait_for()
        assert await row.get_attribute("data-kind") == "incoming"
        assert "Alice A." in await row.inner_text()
        assert not a.errors and not b.errors, (a.errors, b.errors)
    finally:
        await close_page(a)
        await close_page(b)


async def test_decline_reload_missed_and_call_back(server, browser_a, browser_b, name):
    (a, alice), (b, bob) = await pair(server, browser_a, browser_b, name)
    try:
        # 1. Bob declines: Alice is told so.
        await call_contact(a, bob)
        await phase(b, "incoming")
        await b.click('#call [data-action="decline"]')
        await phase(a, "ended")
        assert "declined" in await a.inner_text("#call-status")
        assert "declined" in await b.inner_text("#call-status")
        await a.click('#call [data-action="close"]')
        await b.click('#call [data-action="close"]')

        # 2. Bob reloads while it rings: the events socket's replay brings the call back,
        #    and answering it still works, audio both ways; Bob (the callee) hangs up.
        await call_contact(a, bob)
        await phase(b, "incoming")
        await b.reload()
        await phase(b, "incoming")
        await b.click('#call [data-action="answer"]')
        await phase(a, "active")
        await hears(a, TONE_B_HZ)
        await hears(b, TONE_A_HZ)
        await b.click('#call [data-action="hangup"]')
        await phase(a, "ended")
        assert "ended" in (await a.inner_text("#call-status")).lower()
        await a.click('#call [data-action="close"]')
        await b.click('#call [data-action="close"]')

        # 3. Alice gives up before Bob answers: a missed call for Bob.
        await call_contact(a, bob)
        await phase(b, "incoming")
        await a.click('#call [data-action="hangup"]')
        await phase(b, "ended")
        assert "Missed call from Alice A." in await b.inner_text("#call-status")
        await b.click('#call [data-action="close"]')
        await a.click('#call [data-action="close"]')
        await b.wait_for_function(
            "() => document.getElementById('missed-badge')?.textContent === '1'", timeout=10000
        )

        # 4. History highlights it; calling back from there reaches Alice.
        await b.click("#tab-history")
        newest = b.locator("li.call-row").first
        await newest.wait_for()
        assert await newest.get_attribute("data-kind") == "missed"
        assert "missed" in (await newest.get_attribute("class")).split()
        assert await b.locator("li.call-row").count() == 3
        assert await b.locator("li.call-row.missed").count() == 1
        await newest.locator('[data-action="call-back"]').click()
        await phase(a, "incoming")
        assert "Bob B." in await a.inner_text("#call-name")
        await a.click('#call [data-action="decline"]')
        await phase(b, "ended")
        assert not a.errors and not b.errors, (a.errors, b.errors)
    finally:
        await close_page(a)
        await close_page(b)
