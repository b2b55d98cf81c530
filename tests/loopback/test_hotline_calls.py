"""Hotline callers with real aiortc peers: prompts made of distinct tones prove by spectrum
which node the caller is in; speech, lookups, and the operator queue."""

from __future__ import annotations

import time

import numpy as np

from tests.api.test_ringback import catalog_tone
from tests.audio import band_energy, dominant_frequency
from tests.loopback.test_calls import answer, peers, place
from tests.service import ADMIN_KEY
from voice.media.dtmf import generate

MAIN_HZ, INFO_HZ, NUDGE_HZ = 500.0, 900.0, 1400.0


async def tone_menu(service, **main) -> dict:
    """A menu whose prompts are tones: main = 500 Hz, info = 900 Hz, nudge = 1400 Hz."""
    main_tone = await catalog_tone(service, "main", (MAIN_HZ,))
    info_tone = await catalog_tone(service, "info", (INFO_HZ,))
    nudge_tone = await catalog_tone(service, "nudge", (NUDGE_HZ,))
    menu = {
        "start": "main",
        "operator": {"key": "0", "queue": "desk"},
        "menus": {
            "main": {
                "prompt": {"tone_id": main_tone["tone_id"]},
                "options": {"1": {"goto": "info"}, "9": {"hangup": True}},
                "timeout_s": 1.5,
                "retries": 1,
                "timeout_prompt": {"tone_id": nudge_tone["tone_id"]},
                **main,
            },
            "info": {"prompt": {"tone_id": info_tone["tone_id"]}, "then": {"goto": "main"}},
        },
    }
    await service.client().ok("PUT", "/v1/hotlines/5000", json=menu, token=ADMIN_KEY)
    return menu


async def hears(peer, freq: float, timeout: float = 20) -> None:
    await peer.wait_for_audio(freq, timeout=timeout)


async def test_keys_move_the_caller_through_the_menu_with_barge_in(service):
    await tone_menu(service)
    alice = await service.client().sign_up("alice")
    alice_app = await alice.events()
    async with peers(600.0) as (caller,):
        created = await place(alice, "hotline:5000", caller)
        assert created["state"] == "answered"
        await hears(caller, MAIN_HZ)
        pressed = time.monotonic()
        await alice.ok("POST", f"/v1/calls/{created['call_id']}/dtmf", json={"digits": "1"})
        await hears(caller, INFO_HZ)  # the 2 s main prompt was cut short
        assert time.monotonic() - pressed < 1.9
        await hears(caller, MAIN_HZ)  # info is an announcement: back to main by itself
        await alice.ok("POST", f"/v1/calls/{created['call_id']}/dtmf", json={"digits": "9"})
        ended = await alice_app.state(created["call_id"], "ended")
        assert ended["reason"] == "completed"
    stats = await service.client().ok("GET", "/v1/hotlines/5000/stats", token=ADMIN_KEY)
    assert stats["options_chosen"] == {"main:1": 1, "main:9": 1}
    assert stats["node_visits"] == {"main": 2, "info": 1}
    records = await service.client().ok("GET", "/v1/hotlines/5000/calls", token=ADMIN_KEY)
    assert records[0]["path"] == ["main", "main:1", "info", "main", "main:9"]
    assert records[0]["outcome"] == "menu_end"


async def test_keys_sent_as_tones_in_the_audio_are_heard(service):
    await tone_menu(service)
    alice = await service.client().sign_up("alice")
    async with peers(0.0) as (caller,):  # a silent microphone, then DTMF tones
        created = await place(alice, "hotline:5000", caller)
        await hears(caller, MAIN_HZ)
        caller.track.pending = generate("1", on_ms=120, off_ms=200)
        await hears(caller, INFO_HZ)
        await alice.ok("POST", f"/v1/calls/{created['call_id']}/hangup")
    records = await service.client().ok("GET", "/v1/hotlines/5000/calls", token=ADMIN_KEY)
    assert "main:1" in records[0]["path"]


async def test_silence_gets_the_nudge_then_the_call_ends(service):
    await tone_menu(service)
    alice = await service.client().sign_up("alice")
    alice_app = await alice.events()
    async with peers(600.0) as (caller,):
        created = await place(alice, "hotline:5000", caller)
        await hears(caller, MAIN_HZ)
        await hears(caller, NUDGE_HZ)  # 1.5 s without a key
        await hears(caller, MAIN_HZ)  # and the menu again
        ended = await alice_app.state(created["call_id"], "ended", timeout=30)
        assert ended["reason"] == "completed"
    records = await service.client().ok("GET", "/v1/hotlines/5000/calls", token=ADMIN_KEY)
    assert records[0]["outcome"] == "failure"


async def test_speech_prompts_sound_like_speech(service):
    text = "Welcome to the information line. For the weather, press 1."
    clip = await service.runtime.hotline.speaker.say(text, "en")
    assert 2.0 < clip.duration_s < 8.0
    again = await service.runtime.hotline.speaker.say(text, "en")
    assert again is clip  # cached: synthesised and encoded once
    chinese = await service.runtime.hotline.speaker.say("您好，欢迎致电。", "zh")
    assert 0.8 < chinese.duration_s < 6.0

    alice = await service.client().sign_up("alice")
    async with peers(600.0) as (caller,):
        created = await place(alice, "hotline:114", caller)
        start = time.monotonic()
        await caller.wait_heard(3.0, since_s=start, timeout=20)
        heard = caller.received_pcm(since_s=start).astype(float)
        frames = heard[: len(heard) // 960 * 960].reshape(-1, 960)
        loud = frames[np.sqrt(np.mean(frames**2, axis=1)) > 300]
        assert len(loud) > 40, "expected mostly voiced audio"
        voice = np.concatenate(loud)
        assert 80 < dominant_frequency(voice) < 4000
        assert band_energy(voice, 48000, dominant_frequency(voice), 40) < 0.6  # not one tone
        await alice.ok("POST", f"/v1/calls/{created['call_id']}/hangup")


async def test_weather_lookup_by_keys(service):
    alice = await service.client().sign_up("alice")
    async with peers(600.0) as (caller,):
        created = await place(alice, "hotline:114", caller)
        call = f"/v1/calls/{created['call_id']}/dtmf"
        await alice.ok("POST", call, json={"digits": "1"})
        await alice.ok("POST", call, json={"digits": "010#"})
        records = service.runtime.hotline
        async with __import__("asyncio").timeout(20):
            while "weather:collect" not in records._sessions[created["call_id"]].path:
                await __import__("asyncio").sleep(0.05)
        await alice.ok("POST", f"/v1/calls/{created['call_id']}/hangup")
    stats = await service.client().ok("GET", "/v1/hotlines/114/stats", token=ADMIN_KEY)
    assert stats["options_chosen"]["weather:collect"] == 1


async def agents_ready(service, *names, strategy="longest_idle", **queue):
    await service.client().ok(
        "PUT", "/v1/queues/desk", json={"strategy": strategy, **queue}, token=ADMIN_KEY
    )
    clients = []
    for name in names:
        agent = await service.client().sign_up(name)
        await agent.ok("POST", "/v1/queues/desk/agents", 201)
        socket = await agent.events()
        await agent.ok("PUT", "/v1/agents/me", json={"state": "available"})
        clients.append((agent, socket))
    return clients


async def test_the_longest_idle_operator_takes_the_caller_with_the_menu_context(service):
    await tone_menu(service)
    (carol, carol_app), (dave, dave_app) = await agents_ready(service, "carol", "dave")
    alice = await service.client().sign_up("alice")
    async with peers(600.0, 1000.0) as (caller, operator):
        created = await place(alice, "hotline:5000", caller)
        await hears(caller, MAIN_HZ)
        await alice.ok("POST", f"/v1/calls/{created['call_id']}/dtmf", json={"digits": "0"})
        offer = await carol_app.next("call.incoming")  # carol became available first
        assert offer["call_id"] == created["call_id"] and offer["from"] == "alice"
        assert offer["context"]["path"] == ["main"] and offer["context"]["queue"] == "desk"
        assert not [e for e in dave_app.seen if e["type"] == "call.incoming"]
        await answer(carol, created["call_id"], operator, device=carol_app.device_id)
        await caller.wait_for_audio(1000.0, timeout=20)
        await operator.wait_for_audio(600.0, timeout=20)
        queue = await carol.ok("GET", "/v1/queues/desk")
        assert {a["username"]: a["state"] for a in queue["agents"]}["carol"] == "on_call"
        await carol.ok("PUT", "/v1/agents/me", json={"state": "away"})  # for after this call
        me = await carol.ok("GET", "/v1/agents/me")
        assert (me["state"], me["after_call"]) == ("on_call", "away")
        before = len(carol_app.seen)
        await carol.ok("POST", f"/v1/calls/{created['call_id']}/hangup")
        await carol_app.next(
            "agent.state",
            lambda e: e["state"] == "away" and any(e is n for n in carol_app.seen[before:]),
        )
    records = await service.client().ok("GET", "/v1/hotlines/5000/calls", token=ADMIN_KEY)
    assert records[0]["outcome"] == "operator" and records[0]["operator_id"]
    assert (await carol.ok("GET", "/v1/agents/me"))["state"] == "away"
    history = await carol.ok("GET", "/v1/calls")
    assert history[0]["call_id"] == created["call_id"]


async def test_an_operator_who_does_not_answer_is_set_away_and_the_next_is_tried(service):
    await tone_menu(service)
    (carol, carol_app), (dave, dave_app) = await agents_ready(
        service, "carol", "dave", agent_ring_s=3
    )
    alice = await service.client().sign_up("alice")
    async with peers(600.0) as (caller,):
        created = await place(alice, "hotline:5000", caller)
        await alice.ok("POST", f"/v1/calls/{created['call_id']}/dtmf", json={"digits": "0"})
        await carol_app.next("call.incoming")
        await carol_app.next(
            "call.state", lambda e: e["state"] == "ended" and e["reason"] == "no_answer"
        )
        await carol_app.next("agent.state", lambda e: e["state"] == "away")
        assert (await dave_app.next("call.incoming"))["call_id"] == created["call_id"]
        await alice.ok("POST", f"/v1/calls/{created['call_id']}/hangup")
        await dave_app.state(created["call_id"], "ended")


async def test_nobody_there_overflow_after_the_maximum_wait(service):
    await tone_menu(service)
    await agents_ready(service, max_wait_s=5, announce_every_s=5)
    alice = await service.client().sign_up("alice")
    alice_app = await alice.events()
    async with peers(600.0) as (caller,):
        created = await place(alice, "hotline:5000", caller)
        await alice.ok("POST", f"/v1/calls/{created['call_id']}/dtmf", json={"digits": "0"})
        await caller.wait_for_audio(523.25, timeout=20)  # the hold melody starts on C5
        ended = await alice_app.state(created["call_id"], "ended", timeout=40)
        assert ended["reason"] == "completed"
    records = await service.client().ok("GET", "/v1/hotlines/5000/calls", token=ADMIN_KEY)
    assert records[0]["outcome"] == "overflow" and records[0]["wait_s"] >= 4.5
