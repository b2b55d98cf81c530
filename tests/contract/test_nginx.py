"""deploy/nginx.conf in front of two nodes: a person's app talks only to nginx, whose requests
land on either node; a call between two users works end to end, audio checked by spectrum."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.backends import _wait_port
from tests.browser.harness import _die_with_parent
from tests.contract.test_nodes import two_nodes
from tests.peers import SinePeer
from tests.service import Client, free_port

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"


def configure(prefix: Path, port: int, nodes: list[int]) -> Path:
    """deploy/nginx.conf with the test's ports and files (its `chorus-test` lines)."""
    lines = []
    for line in CONFIG.read_text().splitlines():
        if "chorus-test" in line:
            if line.strip().startswith("error_log"):
                line = f"error_log {prefix}/error.log warn;"
            elif line.strip().startswith("pid"):
                line = f"pid {prefix}/nginx.pid;"
            elif line.strip().startswith("listen"):
                line = f"        listen 127.0.0.1:{port};"
            elif line.strip().startswith("server 127.0.0.1:8081"):
                line = "\n".join(
                    f"        server 127.0.0.1:{n} max_fails=1 fail_timeout=5s;" for n in nodes
                )
            else:
                continue  # the other example upstream lines
        lines.append(line)
    text = "\n".join(lines) + "\n"
    # temp paths nginx would otherwise want under /var/lib/nginx
    temps = "".join(
        f"    {name}_temp_path {prefix}/{name};\n"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = re.sub(r"http \{\n", "http {\n" + temps, text, count=1)
    path = prefix / "nginx.conf"
    path.write_text(text)
    return path


@pytest.fixture
def nginx() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        pytest.fail("nginx is not installed (scripts/system-packages.sh installs it)")
    return found


async def test_a_call_through_nginx_in_front_of_two_nodes(
    tmp_path, redis_server, postgres_server, nginx
):
    async with two_nodes(tmp_path, redis_server, postgres_server) as (node_a, node_b):
        port = free_port()
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        conf = configure(prefix, port, [node_a.settings.port, node_b.settings.port])
        checked = await asyncio.to_thread(
            subprocess.run, [nginx, "-t", "-c", str(conf)], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stderr
        # Started from this (the main) thread: the kernel kills it with the test process.
        process = subprocess.Popen(  # noqa: ASYNC220 - a fork, not a wait
            [nginx, "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        front = SimpleNamespace(base_url=f"http://127.0.0.1:{port}")
        alice, bob = Client(front), Client(front)  # type: ignore[arg-type]
        peers = [SinePeer(440), SinePeer(880)]
        try:
            await asyncio.to_thread(_wait_port, port, process, 10)
            await alice.sign_up("alice")
            await bob.sign_up("bob")
            bob_phone = await bob.events("phone")  # a WebSocket through nginx
            alice_app = await alice.events("laptop")
            placed = await alice.ok(
                "POST", "/v1/calls", 201, json={"to": "bob", "sdp": await peers[0].offer()}
            )
            await peers[0].accept_answer(placed["sdp"])
            call_id = placed["call_id"]
            await bob_phone.next("call.incoming", lambda e: e["call_id"] == call_id)
            answer = await bob.ok(
                "POST",
                f"/v1/calls/{call_id}/answer",
                json={"sdp": await peers[1].offer(), "device_id": bob_phone.device_id},
            )
            await peers[1].accept_answer(answer["sdp"])
            await alice_app.next(
                "call.state", lambda e: e["call_id"] == call_id and e["state"] == "answered"
            )
            await peers[0].wait_for_audio(880, timeout=15)
            await peers[1].wait_for_audio(440, timeout=15)
            for _ in range(4):  # requests land on both nodes; each answers the same
                view = await bob.ok("GET", f"/v1/calls/{call_id}")
                assert view["state"] == "answered"
            await bob.ok("POST", f"/v1/calls/{call_id}/hangup")
            ended = await alice_app.next(
                "call.state", lambda e: e["call_id"] == call_id and e["state"] == "ended"
            )
            assert ended["reason"] == "completed"
            served = [n.runtime.metrics.render().decode() for n in (node_a, node_b)]
            assert all("chorus_event_sockets" in text for text in served)
        finally:
            for peer in peers:
                await peer.close()
            await alice.close()
            await bob.close()
            process.terminate()
            await asyncio.to_thread(process.wait, 10)
