"""Three real browsers in one room. Each page's analyser hears the mix the server sends it:
the other two tones, never its own. The moderator mutes one (the others stop hearing that
tone), removes one, locks the room, ends it and downloads its recording."""

from __future__ import annotations

import asyncio

import pytest

from tests.browser.harness import (
    TONE_A_HZ,
    TONE_B_HZ,
    TONE_C_HZ,
    close_page,
    hears_tones,
    open_page,
    sign_up,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

PIN = "2468"


def unexpected(page, *allowed: str) -> list[str]:
    """The page's errors, less the refusals the test provokes on purpose."""
    return [e for e in page.errors if not any(a in e for a in allowed)]


def row(page, pid: str):
    return page.locator(f'#participants li.participant[data-pid="{pid}"]')


async def sees_participants(page, count: int) -> None:
    await page.wait_for_function(
        "(n) => document.querySelectorAll('#participants li.participant').length === n", arg=count
    )


async def test_three_browsers_in_a_room(server, browser_a, browser_b, browser_c, name):
    a, b, c = await asyncio.gather(
        *(
            open_page(x, server.base_url, raw_microphone=True)
            for x in (browser_a, browser_b, browser_c)
        )
    )
    try:
        await a.context.grant_permissions(["clipboard-read", "clipboard-write"])
        await asyncio.gather(
            sign_up(a, name("ann"), "Ann (host)"),
            sign_up(b, name("ben"), "Ben"),
            sign_up(c, name("cai"), "Cai"),
        )

        # Ann starts a room with a PIN, recorded; she is its moderator
        await a.click("#tab-rooms")
        await a.fill("#room-name", "Team sync")
        await a.fill("#room-pin", PIN)
        await a.check("#room-record")
        await a.click("#create-submit")
        await a.wait_for_selector('#room[data-phase="in"][data-moderator="true"]')
        room_id = await a.get_attribute("#room", "data-room-id")
        assert await a.inner_text("#page-title") == "Team sync"
        link = await a.input_value("#invite-link")
        assert link == f"{server.base_url}/#/rooms/{room_id}"
        await a.click('[data-action="copy-invite"]')
        await a.wait_for_selector("#toasts .toast")
        assert await a.evaluate("navigator.clipboard.readText()") == link

        # Ben joins by id: a wrong PIN is refused with a clear message, the right one works
        await b.click("#tab-rooms")
        await b.fill("#join-room", room_id)
        await b.fill("#join-pin", "1111")
        await b.click("#join-submit")
        await b.wait_for_function(
            "() => document.getElementById('join-error').textContent.includes('PIN is wrong')"
        )
        await b.fill("#join-pin", PIN)
        await b.click("#join-submit")
        await b.wait_for_selector('#room[data-phase="in"][data-moderator="false"]')

        # Cai opens the invite link: the join form is filled in, the PIN is asked
        await c.goto(link)
        await c.wait_for_selector("#invite-note")
        assert await c.input_value("#join-room") == room_id
        await c.fill("#join-pin", PIN)
        await c.click("#join-submit")
        await c.wait_for_selector('#room[data-phase="in"]')

        pids = {}
        for page, key in ((a, "a"), (b, "b"), (c, "c")):
            pids[key] = await page.get_attribute("#room", "data-me")
        # everyone sees the three of them
        for page in (a, b, c):
            await sees_participants(page, 3)

        # each hears the two others and never itself (with three talkers all are mixed)
        await asyncio.gather(
            hears_tones(a, [TONE_B_HZ, TONE_C_HZ], [TONE_A_HZ]),
            hears_tones(b, [TONE_A_HZ, TONE_C_HZ], [TONE_B_HZ]),
            hears_tones(c, [TONE_A_HZ, TONE_B_HZ], [TONE_C_HZ]),
        )
        # live speaking indicators (room.speaking): Ann's page shows Ben and Cai talking
        for pid in (pids["b"], pids["c"]):
            await a.wait_for_selector(
                f'#participants li.participant[data-pid="{pid}"][data-speaking="true"]'
            )

        # Cai reloads the page: the app leaves and joins again by itself, the room screen
        # comes back and says why; the others see one Cai, not two
        await c.reload()
        await c.wait_for_selector('#room[data-phase="in"]')
        assert "reloaded" in await c.inner_text(".room-notices")
        pids["c"] = await c.get_attribute("#room", "data-me")
        await a.wait_for_selector(f'#participants li.participant[data-pid="{pids["c"]}"]')
        await sees_participants(a, 3)
        await hears_tones(c, [TONE_A_HZ, TONE_B_HZ], [TONE_C_HZ])

        # the moderator mutes Cai: the others stop hearing Cai's tone, Cai's page says so
        # and Cai cannot unmute (the moderator did it)
        await row(a, pids["c"]).locator('[data-action="mute"]').click()
        await c.wait_for_selector('#room[data-muted="true"]')
        assert "moderator muted you" in await c.inner_text(".room-notices")
        assert await c.get_attribute('[data-action="mute-self"]', "aria-disabled") == "true"
        await asyncio.gather(
            hears_tones(a, [TONE_B_HZ], [TONE_C_HZ, TONE_A_HZ]),
            hears_tones(b, [TONE_A_HZ], [TONE_C_HZ, TONE_B_HZ]),
        )
        for page in (a, b):
            await page.wait_for_selector(
                f'#participants li.participant[data-pid="{pids["c"]}"][data-muted="true"]'
            )

        # Ben mutes himself: everyone's list shows it
        await b.click('[data-action="mute-self"]')
        await b.wait_for_selector('#room[data-muted="true"]')
        assert await b.get_attribute('[data-action="mute-self"]', "aria-pressed") == "true"
        await c.wait_for_selector(
            f'#participants li.participant[data-pid="{pids["b"]}"][data-muted="true"]'
        )

        # the moderator removes Ben (asked to confirm), then locks the room
        await row(a, pids["b"]).locator('[data-action="kick"]').click()
        await a.click('[data-action="confirm-kick"]')
        await b.wait_for_selector('#room[data-phase="out"][data-reason="kicked"]')
        assert "removed you" in await b.inner_text("#page-title")
        await sees_participants(a, 2)
        await sees_participants(c, 2)
        await a.click('[data-action="lock"]')
        await a.wait_for_selector("#room-locked")
        await c.wait_for_selector("#room-locked")  # room.locked reaches the others
        # Ben tries again: the locked room refuses him, and says why
        await b.click('[data-action="back"]')
        await b.fill("#join-room", room_id)
        await b.fill("#join-pin", PIN)
        await b.click("#join-submit")
        await b.wait_for_function(
            "() => document.getElementById('join-error').textContent.includes('locked')"
        )

        # the moderator lifts Cai's mute: Ann hears Cai again
        await row(a, pids["c"]).locator('[data-action="unmute"]').click()
        await hears_tones(a, [TONE_C_HZ], [TONE_A_HZ, TONE_B_HZ])

        # the moderator ends the room (asked to confirm): Cai is told, Ann gets the recording
        await a.click('[data-action="end"]')
        await a.click('[data-action="confirm-end"]')
        await c.wait_for_selector('#room[data-phase="out"][data-reason="ended"]')
        assert "ended the room" in await c.inner_text("#page-title")
        await a.wait_for_selector('#room[data-phase="out"][data-reason="ended"]')
        async with a.expect_download() as download_info:
            await a.click('[data-action="download-recording"]')
        download = await download_info.value
        data = (await download.path()).read_bytes()
        assert data[:4] == b"OggS" and len(data) > 2000, len(data)

        assert not unexpected(a), a.errors
        refused = ("http 403 POST", "http 409 POST", "status of 403", "status of 409")
        assert not unexpected(b, *refused), b.errors
        assert not unexpected(c), c.errors
    finally:
        for page in (a, b, c):
            await close_page(page)
