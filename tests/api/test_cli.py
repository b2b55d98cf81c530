"""The `chorus` command as a user runs it: a real process, its listening line, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.service import free_port

CHORUS = Path(sys.executable).with_name("chorus")


def start(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(CHORUS), "serve", "--data-dir", str(tmp_path / "data"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_for_line(process: subprocess.Popen[str], prefix: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()  # type: ignore[union-attr]
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if line.startswith(prefix):
            return line.strip()
    process.kill()
    raise AssertionError(f"no {prefix!r} line; output:\n{''.join(seen)}")


def test_help_everywhere():
    for args in ([], ["serve"], ["db"], ["db", "upgrade"]):
        out = subprocess.run(
            [str(CHORUS), *args, "--help"], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0 and "Usage" in out.stdout, args


def test_serve_prints_the_listening_line_and_stops_cleanly_on_sigterm(tmp_path):
    port = free_port()
    process = start(tmp_path, "--port", str(port), env={"CHORUS_NO_ANSWER_TIMEOUT_S": "30"})
    try:
        line = wait_for_line(process, "chorus: listening on")
        assert line == f"chorus: listening on http://127.0.0.1:{port}"
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json() == {"status": "ok"}
        created = httpx.post(
            f"http://127.0.0.1:{port}/v1/users",
            json={"username": "zoe", "password": "secret-pw"},
            timeout=10,
        )
        assert created.status_code == 201
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        output = process.stdout.read()  # type: ignore[union-attr]
        assert "secret-pw" not in output
    finally:
        if process.poll() is None:
            process.kill()
    key_file = tmp_path / "data" / "admin.key"
    assert key_file.exists() and oct(key_file.stat().st_mode & 0o777) == "0o600"
    # the account survives the restart
    process = start(tmp_path, "--port", str(port))
    try:
        wait_for_line(process, "chorus: listening on")
        session = httpx.post(
            f"http://127.0.0.1:{port}/v1/sessions",
            json={"username": "zoe", "password": "secret-pw"},
            timeout=10,
        )
        assert session.status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_bad_settings_are_refused_with_a_message(tmp_path):
    out = subprocess.run(
        [str(CHORUS), "serve", "--data-dir", str(tmp_path), "--region", "mars"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "region" in out.stderr


def test_db_upgrade(tmp_path):
    out = subprocess.run(
        [str(CHORUS), "db", "upgrade", "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "d" / "chorus.db").exists()


def test_tones_add_and_list_stock_the_catalog(tmp_path):
    from tests.audiofiles import encoded, wav_bytes

    port = free_port()
    env = {"CHORUS_ADMIN_KEY": "cli-admin-key", "CHORUS_SERVER": f"http://127.0.0.1:{port}"}
    process = start(tmp_path, "--port", str(port), env=env)
    try:
        wait_for_line(process, "chorus: listening on")
        (tmp_path / "jasmine.wav").write_bytes(wav_bytes((900.0,), 2.0))
        (tmp_path / "festival.mp3").write_bytes(encoded("mp3", (600.0,), 1.0))
        (tmp_path / "broken.mp3").write_bytes(b"not audio at all" * 100)
        added = subprocess.run(
            [
                str(CHORUS),
                "tones",
                "add",
                str(tmp_path / "jasmine.wav"),
                str(tmp_path / "festival.mp3"),
                str(tmp_path / "broken.mp3"),
                "--category",
                "folk",
                "--price",
                "2",
                "--validity-days",
                "30",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **env},
        )
        assert added.returncode == 1  # one of three files was refused
        assert "jasmine" in added.stdout and "festival" in added.stdout
        assert "broken.mp3" in added.stderr and "refused (422)" in added.stderr
        listed = subprocess.run(
            [str(CHORUS), "tones", "list", "--category", "folk"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env},
        )
        assert listed.returncode == 0
        assert sorted(line.split()[-1] for line in listed.stdout.splitlines()) == [
            "festival",
            "jasmine",
        ]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_tokens_never_reach_the_log(tmp_path):
    import asyncio

    import websockets

    port = free_port()
    process = start(tmp_path, "--port", str(port), "--log-level", "debug")
    try:
        wait_for_line(process, "chorus: listening on")
        base = f"http://127.0.0.1:{port}"
        body = {"username": "zed", "password": "zed-secret-pw"}
        httpx.post(f"{base}/v1/users", json=body, timeout=10)
        token = httpx.post(f"{base}/v1/sessions", json=body, timeout=10).json()["token"]
        httpx.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)

        async def socket() -> None:
            async with websockets.connect(f"ws://127.0.0.1:{port}/v1/events?token={token}") as ws:
                assert "hello" in await ws.recv()

        asyncio.run(socket())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        output = process.stdout.read()  # type: ignore[union-attr]
        assert "/v1/events" in output  # the socket was logged...
        assert token not in output and "zed-secret-pw" not in output  # ...without its token
    finally:
        if process.poll() is None:
            process.kill()
