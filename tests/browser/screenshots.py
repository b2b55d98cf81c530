"""Screenshots of the main screens into docs/screenshots/, from a real server and browsers.

    .venv/bin/python -m tests.browser.screenshots [--out docs/screenshots]

Not part of the test run (it rewrites files in the repository); run it after UI changes.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import TimeoutError as PlaywrightTimeout
from playwright.async_api import async_playwright

from tests.browser.harness import (
    ADMIN_KEY,
    PASSWORD,
    TONE_A_HZ,
    TONE_B_HZ,
    Server,
    hears,
    launch,
    open_page,
    phase,
    sign_in,
    write_tone,
)

DESKTOP = {"width": 1100, "height": 720}
PHONE = {"width": 390, "height": 780}

PEOPLE = [
    ("mei", "Li Mei", "family"),
    ("sam", "Sam Taylor", "work"),
    ("ana", "Ana García", "work"),
    ("jun", "Wang Jun", "family"),
    ("olu", "Olu Adeyemi", None),
]


async def api_setup(base_url: str) -> dict[str, str]:
    tokens = {}
    async with httpx.AsyncClient(base_url=base_url) as http:
        for username, display, _ in [("you", "Alex Chen", None), *PEOPLE]:
            body = {"username": username, "password": PASSWORD, "display_name": display}
            (await http.post("/v1/users", json=body)).raise_for_status()
            session = await http.post(
                "/v1/sessions", json={"username": username, "password": PASSWORD}
            )
            tokens[username] = session.json()["token"]
        me = {"Authorization": f"Bearer {tokens['you']}"}
        for username, _, group in PEOPLE:
            contact = {"username": username, **({"group": group} if group else {})}
            (await http.post("/v1/contacts", json=contact, headers=me)).raise_for_status()
            them = {"Authorization": f"Bearer {tokens[username]}"}
            (
                await http.post("/v1/contacts", json={"username": "you"}, headers=them)
            ).raise_for_status()
        if (await http.get("/v1/ringback/tones", headers=me)).status_code == 200:
            await ringback_setup(http, me, tokens)
    return tokens


async def ringback_setup(http: httpx.AsyncClient, me: dict[str, str], tokens: dict) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    wavs = Path(tempfile.mkdtemp())
    catalog = [
        ("Spring Rain", "Lin Yu", "Nature", "2.00", 520),
        ("Morning Jazz", "The Quartet", "Jazz", "0", 610),
        ("Lantern Festival", "Folk Ensemble", "Traditional", "1.50", 700),
    ]
    for title, artist, category, price, hz in catalog:
        wav = write_tone(wavs / f"{hz}.wav", hz, 3)
        fields = {"title": title, "artist": artist, "category": category, "price": price}
        files = {"file": (wav.name, wav.read_bytes(), "audio/wav")}
        response = await http.post("/v1/ringback/tones", data=fields, files=files, headers=admin)
        response.raise_for_status()
    tones = (await http.get("/v1/ringback/tones", headers=me)).json()
    jazz = next(t for t in tones if t["title"] == "Morning Jazz")
    (
        await http.post("/v1/me/ringback/box", json={"tone_id": jazz["tone_id"]}, headers=me)
    ).raise_for_status()
    wav = write_tone(wavs / "mine.wav", 880, 3)
    files = {"file": ("my-song.wav", wav.read_bytes(), "audio/wav")}
    mine = await http.post(
        "/v1/ringback/tones", data={"title": "Our song"}, files=files, headers=me
    )
    mine.raise_for_status()
    setting = {
        "default_tone_id": jazz["tone_id"],
        "mode": "single",
        "rules": [
            {"tone_id": mine.json()["tone_id"], "callers": ["mei"]},
            {
                "tone_id": jazz["tone_id"],
                "groups": ["work"],
                "days": [0, 1, 2, 3, 4],
                "start": "09:00",
                "end": "18:00",
            },
        ],
    }
    (await http.put("/v1/me/ringback", json=setting, headers=me)).raise_for_status()


async def shoot(page: Any, out: Path, name: str) -> None:
    await page.mouse.move(1, 1)  # no hover effects in the picture
    await page.wait_for_timeout(400)  # let transitions settle
    await page.screenshot(path=str(out / f"{name}.png"))
    print("wrote", out / f"{name}.png")


async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        server = Server(tmp_path / "data")
        await server.start()
        try:
            await api_setup(server.base_url)
            async with async_playwright() as pw:
                browser_a = await launch(pw, write_tone(tmp_path / "a.wav", TONE_A_HZ))
                browser_b = await launch(pw, write_tone(tmp_path / "b.wav", TONE_B_HZ))
                await scenes(server, browser_a, browser_b, out)
                await browser_a.close()
                await browser_b.close()
        finally:
            await server.stop()


async def scenes(server: Server, browser_a: Any, browser_b: Any, out: Path) -> None:
    you = await open_page(browser_a, server.base_url, viewport=DESKTOP)
    await you.wait_for_selector("#username")
    await shoot(you, out, "sign-in")
    await sign_in(you, "you")

    sam = await open_page(browser_b, server.base_url, viewport=PHONE)
    await sign_in(sam, "sam")
    ana = await open_page(browser_b, server.base_url, viewport=PHONE)
    await sign_in(ana, "ana")

    # some history: a missed call from Ana, a declined call to Ana, a call with Sam
    await ana.click('li.contact[data-username="you"] [data-action="call"]')
    await phase(you, "incoming")
    await ana.click('#call [data-action="hangup"]')
    await phase(you, "ended")
    await you.click('#call [data-action="close"]')
    await you.click('li.contact[data-username="ana"] [data-action="call"]')
    await phase(ana, "incoming")
    await ana.click('#call [data-action="decline"]')
    await phase(you, "ended")
    await you.click('#call [data-action="close"]')

    # incoming call from Sam (desktop), answered; in-call on both sizes
    await sam.click('li.contact[data-username="you"] [data-action="call"]')
    await phase(you, "incoming")
    await shoot(you, out, "incoming-call")
    await you.click('#call [data-action="answer"]')
    await hears(you, TONE_B_HZ)
    await hears(sam, TONE_A_HZ)
    await you.wait_for_function(
        "() => document.querySelector('#call .quality')?.dataset.grade === 'good'", timeout=15000
    )
    await sam.wait_for_function(
        "() => document.querySelector('#call .quality')?.dataset.grade === 'good'", timeout=15000
    )
    await you.wait_for_timeout(2500)  # a few seconds on the timer
    await shoot(you, out, "in-call")
    await sam.click('#call [data-action="keypad"]')
    for digit in "42":
        await sam.click(f'#call [data-action="key-{digit}"]')
    await shoot(sam, out, "in-call-phone")
    await sam.click('#call [data-action="hangup"]')
    await phase(you, "ended")
    await you.click('#call [data-action="close"]')

    await you.evaluate("document.activeElement?.blur()")
    await shoot(you, out, "contacts")
    await you.click("#tab-history")
    await you.wait_for_selector("li.call-row")
    await shoot(you, out, "history")
    if await you.locator("#tab-ringback").count():
        await you.click("#tab-ringback")
        await you.wait_for_selector("#rb-preview[data-tone-id]")
        await you.set_viewport_size({"width": 1100, "height": 1000})
        await shoot(you, out, "ringback")
        await you.set_viewport_size(DESKTOP)

    # Chinese, on a phone
    phone = await open_page(browser_a, server.base_url, viewport=PHONE, locale="zh-CN")
    await sign_in(phone, "mei")
    await shoot(phone, out, "contacts-phone-zh")
    for page in (you, sam, ana, phone):
        await page.context.close()

    if await rooms_and_hotline_offered(server):
        await room_scenes(server, browser_a, browser_b, out)
        await hotline_scenes(server, browser_a, browser_b, out)


async def rooms_and_hotline_offered(server: Server) -> bool:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
    return "/v1/rooms" in paths and "/v1/hotlines" in paths


async def room_scenes(server: Server, browser_a: Any, browser_b: Any, out: Path) -> None:
    # The tones stay audible (no voice processing), so the speaking indicators light up.
    you = await open_page(browser_a, server.base_url, viewport=DESKTOP, raw_microphone=True)
    await sign_in(you, "you")
    await you.click("#tab-rooms")
    await you.wait_for_selector("#my-rooms .empty, #my-rooms ul")
    await shoot(you, out, "rooms")
    await you.fill("#room-name", "Weekly family call")
    await you.fill("#room-pin", "2468")
    await you.check("#room-record")
    await you.click("#create-submit")
    await you.wait_for_selector('#room[data-phase="in"]')
    room_id = await you.get_attribute("#room", "data-room-id")

    guests = []
    for username, viewport, locale in (("mei", PHONE, "zh-CN"), ("jun", PHONE, None)):
        options = {"locale": locale} if locale else {}
        guest = await open_page(
            browser_b, server.base_url, viewport=viewport, raw_microphone=True, **options
        )
        await sign_in(guest, username)
        await guest.goto(f"/#/rooms/{room_id}")
        await guest.fill("#join-pin", "2468")
        await guest.click("#join-submit")
        await guest.wait_for_selector('#room[data-phase="in"]')
        guests.append(guest)
    mei, jun = guests
    await you.wait_for_function(
        "() => document.querySelectorAll('#participants li[data-speaking=\"true\"]').length >= 2",
        timeout=20000,
    )
    jun_pid = await jun.get_attribute("#room", "data-me")
    await you.click(f'#participants li[data-pid="{jun_pid}"] [data-action="mute"]')
    await you.wait_for_selector(f'#participants li[data-pid="{jun_pid}"][data-muted="true"]')
    await you.evaluate("document.activeElement?.blur()")
    await you.set_viewport_size({"width": 1100, "height": 860})
    await shoot(you, out, "room")
    await mei.wait_for_selector('#participants li[data-muted="true"]')
    await shoot(mei, out, "room-phone-zh")
    await you.click('[data-action="end"]')
    await you.click('[data-action="confirm-end"]')
    await you.wait_for_selector("#recordings, #room .muted")
    for page in (you, mei, jun):
        await page.context.close()


async def hotline_scenes(server: Server, browser_a: Any, browser_b: Any, out: Path) -> None:
    you = await open_page(browser_a, server.base_url, viewport=DESKTOP)
    await sign_in(you, "you")
    await you.click("#tab-hotline")
    await you.click("#queue-join button[type=submit]")
    await you.click('#agent-toggle [data-state="available"]')
    await you.wait_for_selector('#agent-state[data-state="available"]')
    await you.evaluate("document.activeElement?.blur()")
    await shoot(you, out, "hotline")

    # Olu calls 114 on a phone: the weather for Beijing, then 0 for an operator
    olu = await open_page(browser_b, server.base_url, viewport=PHONE)
    await sign_in(olu, "olu")
    await olu.click("#tab-hotline")
    await olu.click('li.hotline[data-number="114"] [data-action="dial"]')
    await phase(olu, "active")
    await olu.click('#call [data-action="key-1"]')
    for key in "010#":
        await olu.click(f'#call [data-action="key-{key}"]')
    await olu.wait_for_selector('#call[data-dtmf-pending="0"]')
    await shoot(olu, out, "hotline-call-phone")
    # the forecast is spoken; the operator key works once the menu is back at its start
    for _ in range(40):
        await olu.click('#call [data-action="key-0"]')
        try:
            await phase(you, "incoming", timeout=1000)
            break
        except PlaywrightTimeout:  # not yet back in the main menu: press again
            continue
    await phase(you, "incoming")
    await shoot(you, out, "operator-incoming")
    await you.click('#call [data-action="answer"]')
    await phase(you, "active")
    await olu.click('#call [data-action="hangup"]')
    await phase(you, "ended")
    for page in (you, olu):
        await page.context.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(out))
