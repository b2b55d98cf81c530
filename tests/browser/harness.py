"""Driving the web app in headless Chromium: the server as a subprocess, browsers with fake
microphones playing a sine each, and page helpers. Shared by the tests and screenshots.py.

Chromium flags that matter (the rest only keep a headless browser quiet and offline):
- `--use-fake-ui-for-media-stream` grants the microphone without a prompt;
  `--use-fake-device-for-media-stream` + `--use-file-for-fake-audio-capture=<wav>` make that
  microphone play the WAV (looped), so each browser sends its own tone.
- `--allow-loopback-in-peer-connection`: Chromium leaves loopback out of its ICE candidates;
  the server's only candidate is 127.0.0.1 by default, so without this the pair that works
  would depend on the machine having another interface (192.0.2.2 -> 127.0.0.1 happens to
  work on Linux; a machine with only `lo` would get no candidate pair at all).
- `--disable-features=WebRtcHideLocalIpsWithMdns`: Chromium replaces host candidates with
  `<uuid>.local` mDNS names unless the page holds a capture permission. The app always opens
  the microphone before its offer, so real addresses are sent anyway; the flag keeps a test
  from depending on that ordering (the server would have to resolve mDNS otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import os
import shutil
import signal
import socket
import sys
import wave
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

CHROMIUM = os.environ.get("CHORUS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ADMIN_KEY = "browser-test-admin-key"
PASSWORD = "secret-pw-1"
# Frequencies far from the cn ringback / busy tone (450 Hz) and from each other.
TONE_A_HZ = 660
TONE_B_HZ = 1040
TONE_C_HZ = 850  # the third browser (rooms): apart from A and B and their sums/differences
RINGBACK_HZ = 450
_waits = itertools.count()


def chromium_args(wav: Path) -> list[str]:
    return [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
    ]


def write_tone(path: Path, hz: float, seconds: float = 10.0, rate: int = 48000) -> Path:
    """A mono 16-bit sine WAV (whole periods, so Chromium's looping has no click)."""
    periods = max(1, round(hz * seconds))
    n = round(periods * rate / hz)
    t = np.arange(n) / rate
    samples = (0.35 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    # Linux: the server gets SIGTERM if the test process dies, even by SIGKILL.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Server:
    """`chorus serve` in a subprocess on a fixed port; stop() and start() again to restart."""

    def __init__(self, data_dir: Path, port: int | None = None, *extra: str):
        self.data_dir = data_dir
        self.port = port or free_port()
        self.extra = extra
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: asyncio.subprocess.Process | None = None
        self.log_path = data_dir.parent / f"server-{self.port}.log"

    async def start(self, timeout: float = 60) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        env = {**os.environ, "CHORUS_ADMIN_KEY": ADMIN_KEY, "PYTHONUNBUFFERED": "1"}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from api.cli import app; app()",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.extra,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2) as http:
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"chorus serve exited:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/healthz")).status_code == 200:
                        return
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(f"chorus serve did not start:\n{self.log_tail()}")
                await asyncio.sleep(0.1)

    async def stop(self, timeout: float = 30) -> int | None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return process.returncode if process else None
        process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            return await process.wait()

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@contextlib.asynccontextmanager
async def serving(data_dir: Path, *extra: str) -> AsyncIterator[Server]:
    server = Server(data_dir, None, *extra)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()


async def launch(playwright: Any, wav: Path) -> Any:
    return await playwright.chromium.launch(executable_path=CHROMIUM, args=chromium_args(wav))


# ------------------------------------------------------------------------- page helpers


# The browser's voice processing (noise suppression above all) takes a steady sine for
# noise and fades it out within seconds; a room then hears near silence, which its speaker
# selection (and the browser's Opus DTX) rightly drop. People do not hum pure sines, so the
# app keeps the processing on; tests that listen to tones in a room turn it off.
RAW_MICROPHONE = """
(() => {
  const devices = navigator.mediaDevices;
  if (!devices || !devices.getUserMedia) return;
  const real = devices.getUserMedia.bind(devices);
  const raw = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
  devices.getUserMedia = (constraints) => real(
    constraints && constraints.audio ? { ...constraints, audio: raw } : constraints);
})();
"""


async def open_page(
    browser: Any, base_url: str, *, raw_microphone: bool = False, **context_options: Any
) -> Any:
    """A fresh browser context (own storage) with the app loaded; page errors are recorded.
    `raw_microphone`: the fake microphone's tone reaches the app without voice processing."""
    context = await browser.new_context(
        base_url=base_url,
        viewport=context_options.pop("viewport", {"width": 1100, "height": 800}),
        **context_options,
    )
    if raw_microphone:
        await context.add_init_script(RAW_MICROPHONE)
    page = await context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda exc: page.errors.append(f"pageerror: {exc}"))
    page.on(
        "console",
        lambda msg: page.errors.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    page.on(
        "response",
        lambda r: (
            page.errors.append(f"http {r.status} {r.request.method} {r.url}")
            if r.status >= 400
            else None
        ),
    )
    await page.goto("/")
    return page


async def sign_up(page: Any, username: str, display_name: str | None = None) -> None:
    await page.click("#tab-signup")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    if display_name:
        await page.fill("#display_name", display_name)
    await page.click("form.auth-form button[type=submit]")
    await page.wait_for_selector("#contact-list")
    await page.wait_for_selector('#conn[data-status="online"]')


async def sign_in(page: Any, username: str) -> None:
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("form.auth-form button[type=submit]")
    await page.wait_for_selector('#conn[data-status="online"]')


async def add_contact(page: Any, username: str, group: str | None = None) -> None:
    await page.fill("#add-username", username)
    if group:
        await page.fill("#add-group", group)
    await page.click("#add-contact button[type=submit]")
    await page.wait_for_selector(f'li.contact[data-username="{username}"]')


async def call_contact(page: Any, username: str) -> None:
    await page.click(f'li.contact[data-username="{username}"] [data-action="call"]')


async def phase(page: Any, name: str, timeout: float = 20000) -> None:
    await page.wait_for_selector(f'#call[data-phase="{name}"]', timeout=timeout)


async def hears(page: Any, hz: float, tolerance: float = 15, timeout: float = 20000) -> None:
    """Waits until the page's analyser reports `hz` as the dominant frequency of what it hears."""
    await page.wait_for_function(
        """([hz, tol]) => {
            const el = document.getElementById('call');
            return !!el && Math.abs(Number(el.dataset.remoteHz) - hz) <= tol
                && Number(el.dataset.remoteDb) > -75;
        }""",
        arg=[hz, tolerance],
        timeout=timeout,
        polling=200,
    )


async def peaks(page: Any) -> list[int]:
    """The tones the room screen's analyser hears now (strongest first)."""
    text = await page.get_attribute("#room", "data-peaks") or ""
    return [int(x) for x in text.split(",") if x]


async def hears_tones(
    page: Any,
    present: Sequence[float],
    absent: Sequence[float] = (),
    *,
    tolerance: float = 15,
    timeout: float = 20000,
    steady_for: int = 4,
) -> list[int]:
    """Waits until the room page hears every tone of `present` and none of `absent`, in
    `steady_for` consecutive readings (250 ms apart), so a tone that is there only now and
    then does not pass as absent."""
    key = f"__steady{next(_waits)}"  # each wait counts its own consecutive readings
    try:
        await _wait_tones(page, present, absent, tolerance, steady_for, key, timeout)
    except Exception as exc:
        state = await page.evaluate("() => ({...(document.getElementById('room')?.dataset || {})})")
        raise AssertionError(f"expected {present} and not {absent}; the room says {state}") from exc
    return await peaks(page)


async def _wait_tones(
    page: Any,
    present: Sequence[float],
    absent: Sequence[float],
    tolerance: float,
    steady_for: int,
    key: str,
    timeout: float,
) -> None:
    await page.wait_for_function(
        """([present, absent, tol, steady, key]) => {
            const el = document.getElementById('room');
            if (!el) return false;
            const found = (el.dataset.peaks || '').split(',').filter(Boolean).map(Number);
            const near = (hz) => found.some((f) => Math.abs(f - hz) <= tol);
            const ok = present.every(near) && !absent.some(near);
            window[key] = ok ? (window[key] || 0) + 1 : 0;
            return window[key] >= steady;
        }""",
        arg=[list(present), list(absent), tolerance, steady_for, key],
        timeout=timeout,
        polling=250,
    )


async def close_page(page: Any) -> None:
    with contextlib.suppress(Exception):
        await page.context.close()
