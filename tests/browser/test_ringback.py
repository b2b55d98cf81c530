"""The ringback page changes what a caller hears: the callee uploads tones, makes one the
default and gives one caller a rule of their own; the caller's page hears each by spectrum."""

from __future__ import annotations

import pytest

from tests.browser.harness import (
    add_contact,
    call_contact,
    close_page,
    hears,
    open_page,
    phase,
    sign_up,
    write_tone,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

DEFAULT_HZ = 800
RULE_HZ = 1250


async def upload(page, wav, title):
    await page.set_input_files("#upload-file", str(wav))
    await page.fill("#upload-title", title)
    await page.click("#rb-upload-card button[type=submit]")
    await page.wait_for_function(
        """(title) => [...document.querySelectorAll('#rb-box-card .row-title')]
            .some((el) => el.textContent === title)""",
        arg=title,
        timeout=30000,
    )


async def ring_and_listen(caller, callee, username, hz):
    await call_contact(caller, username)
    await phase(callee, "incoming")
    await phase(caller, "ringing")
    await hears(caller, hz, timeout=20000)
    await caller.click('#call [data-action="hangup"]')
    await phase(callee, "ended")
    await caller.click('#call [data-action="close"]')
    await callee.click('#call [data-action="close"]')


async def test_ringback_settings_change_what_the_caller_hears(
    server, browser_a, browser_b, name, tmp_path
):
    alice, bob = name("alice"), name("bob")
    a = await open_page(browser_a, server.base_url)
    b = await open_page(browser_b, server.base_url)
    try:
        await sign_up(a, alice, "Alice")
        await sign_up(b, bob, "Bob")
        await add_contact(a, bob)
        await add_contact(b, alice, "family")

        await b.click("#tab-ringback")
        await b.wait_for_selector("#rb-upload-card")
        await b.wait_for_selector("#rb-preview[data-tone-id]")
        assert "standard ring tone" in await b.inner_text("#rb-preview")

        # a personal tone as the default: Alice hears it while the call rings
        await upload(b, write_tone(tmp_path / "sunrise.wav", DEFAULT_HZ, 4), "Sunrise")
        await b.click('#rb-box-card li.tone [data-action="make-default"]')
        await b.wait_for_function(
            "() => document.getElementById('rb-preview')?.textContent.includes('Sunrise')"
        )
        await ring_and_listen(a, b, bob, DEFAULT_HZ)

        # a second tone, for Alice only: the rule beats the default
        await upload(b, write_tone(tmp_path / "evening.wav", RULE_HZ, 4), "Evening")
        evening = await b.eval_on_selector_all(
            "#rule-tone option", "opts => opts.find(o => o.textContent === 'Evening').value"
        )
        await b.select_option("#rule-tone", evening)
        await b.select_option("#rule-who", f"u:{alice}")
        await b.click("#rb-rules-card form button[type=submit]")
        await b.wait_for_selector("#rb-rules-card li.rule")
        await b.select_option("#rb-preview-caller", alice)
        await b.wait_for_function(
            "() => document.getElementById('rb-preview')?.textContent.includes('Evening')"
        )
        assert "rule for this caller" in await b.inner_text("#rb-preview")
        await ring_and_listen(a, b, bob, RULE_HZ)
        assert not a.errors and not b.errors, (a.errors, b.errors)
    finally:
        await close_page(a)
        await close_page(b)
