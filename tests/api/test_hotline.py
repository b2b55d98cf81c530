"""Hotline administration through the API: menus (JSON and YAML, versioned, validated),
provider data, queues and agents."""

from __future__ import annotations

import copy
import json

from tests.service import ADMIN_KEY

MENU = {
    "start": "main",
    "menus": {
        "main": {
            "prompt": {"say": "Press 1 for weather."},
            "options": {"1": {"goto": "weather"}, "0": {"queue": "operators"}},
        },
        "weather": {
            "prompt": {"say": "Enter the code, then hash."},
            "max_digits": 4,
            "finish_key": "#",
            "collect": {
                "lookup": {"provider": "weather", "say": "{city}", "then": {"goto": "main"}}
            },
        },
    },
}

YAML_MENU = """
start: main
language: zh
menus:
  main:
    prompt: {say: 您好，请按1。}
    options:
      "1": {hangup: true}
"""


async def test_publish_version_and_read_menus(service):
    admin = service.client(ADMIN_KEY)
    first = await admin.ok("PUT", "/v1/hotlines/777", json=MENU)
    assert (first["number"], first["version"]) == ("777", 1)
    changed = copy.deepcopy(MENU)
    changed["menus"]["main"]["prompt"]["say"] = "Press 1, please."
    assert (await admin.ok("PUT", "/v1/hotlines/777", json=changed))["version"] == 2
    user = await service.client().sign_up("alice")
    got = await user.ok("GET", "/v1/hotlines/777")
    assert (
        got["version"] == 2 and got["menu"]["menus"]["main"]["prompt"]["say"] == "Press 1, please."
    )
    numbers = [h["number"] for h in await user.ok("GET", "/v1/hotlines")]
    assert numbers == ["114", "12580", "777"]  # the samples are installed on first start
    yaml_menu = await admin.request(
        "PUT",
        "/v1/hotlines/888",
        content=YAML_MENU.encode(),
        headers={"Content-Type": "application/yaml"},
    )
    assert yaml_menu.status_code == 200 and yaml_menu.json()["menu"]["language"] == "zh"
    assert (await user.request("PUT", "/v1/hotlines/999", json=MENU)).status_code == 403
    assert (await user.request("GET", "/v1/hotlines/404404")).status_code == 404


async def test_an_invalid_menu_names_the_path_and_the_old_one_stays_live(service):
    admin = service.client(ADMIN_KEY)
    await admin.ok("PUT", "/v1/hotlines/777", json=MENU)
    cases = [
        ({**MENU, "start": "nowhere"}, "start"),
        (
            {
                "start": "main",
                "menus": {"main": {"options": {"1": {"goto": "ghost"}}, "prompt": {"say": "x"}}},
            },
            "menus.main.options.1.goto",
        ),
        (
            {
                "start": "main",
                "menus": {
                    "main": {
                        "prompt": {"say": "x"},
                        "collect": {"lookup": {"provider": "horoscope"}},
                    }
                },
            },
            "menus.main.collect.lookup.provider",
        ),
        (
            {
                "start": "a",
                "menus": {
                    "a": {"say": "A", "then": {"goto": "b"}},
                    "b": {"say": "B", "then": {"goto": "a"}},
                },
            },
            "menus.a.then",
        ),
        ("not a menu", "$"),
    ]
    for document, path in cases:
        response = await admin.request("PUT", "/v1/hotlines/777", json=document)
        assert response.status_code == 422, document
        assert response.json()["error"]["code"] == "invalid_menu"
        assert response.json()["error"]["message"].startswith(path + ":")
    for raw, kind in ((b"{broken", "application/json"), (b"a: [b", "application/yaml")):
        response = await admin.request(
            "PUT", "/v1/hotlines/777", content=raw, headers={"Content-Type": kind}
        )
        assert response.status_code == 422
    response = await admin.request("PUT", "/v1/hotlines/12ab", json=MENU)
    assert response.status_code == 422 and response.json()["error"]["code"] == "bad_number"
    assert (await admin.ok("GET", "/v1/hotlines/777"))["version"] == 1


async def test_provider_data_can_be_replaced_and_garbage_is_refused(service):
    admin = service.client(ADMIN_KEY)
    shipped = await admin.ok("GET", "/v1/hotline-data/weather")
    assert shipped["entries"]["010"]["city"] == "Beijing"
    data = {"entries": {"1234": {"city": "Testville", "summary": "sunny", "low": 1, "high": 2}}}
    assert (await admin.ok("PUT", "/v1/hotline-data/weather", json=data))["entries"] == 1
    assert (
        await service.runtime.hotline.providers["weather"].lookup("1234") == data["entries"]["1234"]
    )
    assert await service.runtime.hotline.providers["weather"].lookup("010") is None
    for bad in ({"entries": []}, {"entries": {"1": {"city": ["x"]}}}, {"rows": {}}, [1, 2]):
        assert (await admin.request("PUT", "/v1/hotline-data/weather", json=bad)).status_code == 422
    assert (await admin.request("PUT", "/v1/hotline-data/lottery", json=data)).status_code == 404
    user = await service.client().sign_up("alice")
    assert (await user.request("PUT", "/v1/hotline-data/weather", json=data)).status_code == 403


async def test_queues_and_agents(service):
    admin = service.client(ADMIN_KEY)
    settings = await admin.ok(
        "PUT", "/v1/queues/operators", json={"strategy": "round_robin", "wrap_up_s": 5}
    )
    assert settings["strategy"] == "round_robin"
    bad = await admin.request("PUT", "/v1/queues/operators", json={"strategy": "coin_flip"})
    assert bad.status_code == 422 and "strategy" in bad.json()["error"]["message"]
    carol = await service.client().sign_up("carol")
    carol_app = await carol.events()
    assert (
        await carol.request("PUT", "/v1/agents/me", json={"state": "available"})
    ).status_code == 404
    assert (await carol.ok("GET", "/v1/agents/me"))["state"] is None
    await carol.ok("POST", "/v1/queues/operators/agents", 201)
    await carol.ok("PUT", "/v1/agents/me", json={"state": "available"})
    joined = await carol.ok("POST", "/v1/queues/night/agents", 201)  # keeps her state
    assert joined["state"] == "available"
    me = await carol.ok("GET", "/v1/agents/me")
    assert (me["state"], me["queues"]) == ("available", ["night", "operators"])
    await carol.ok("DELETE", "/v1/queues/night/agents/me", 204)
    assert (await carol_app.next("agent.state", lambda e: e["state"] == "available"))["queues"] == [
        "operators"
    ]
    # and by the events socket
    seen = len(carol_app.seen)
    await carol_app.ws.send(json.dumps({"type": "agent.state", "state": "away"}))
    await carol_app.next(
        "agent.state", lambda e: e["state"] == "away" and any(e is n for n in carol_app.seen[seen:])
    )
    queue = await admin.ok("GET", "/v1/queues/operators")
    assert queue["agents"] == [{"username": "carol", "state": "away"}] and queue["waiting"] == 0
    for state in ("on_call", "sleeping"):
        assert (
            await carol.request("PUT", "/v1/agents/me", json={"state": state})
        ).status_code == 422
    stranger = await service.client().sign_up("mallory")
    assert (await stranger.request("GET", "/v1/queues/operators")).status_code == 404
    assert (await carol.request("DELETE", "/v1/queues/operators/agents/me")).status_code == 204
    assert (await carol.request("DELETE", "/v1/queues/operators/agents/me")).status_code == 404


async def test_calling_an_unknown_hotline(service):
    alice = await service.client().sign_up("alice")
    response = await alice.request("POST", "/v1/calls", json={"to": "hotline:4040", "sdp": "v=0"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "hotline_not_found"
