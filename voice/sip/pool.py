"""The pool of pjsua2 worker processes, seen from the API process.

Each worker (`voice.sip.pj`) carries at most `CALLS_PER_WORKER` calls, the pjsua2 wheel's
compile-time limit. The pool packs calls onto the busiest worker that has room, keeps
`spare_slots` free slots ready (starting a worker takes ~0.3 s, so new calls never wait for
one unless a burst outruns the spares), retires workers left idle beyond that, and replaces a
worker that dies: its calls end (`failed`) and nothing else notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("chorus.sip")

CALLS_PER_WORKER = 4
AUDIO_IN = struct.Struct("!H")
AUDIO_OUT = struct.Struct("!HI")
START_TIMEOUT_S = 20.0


@dataclass
class WorkerConfig:
    sip_host: str
    media_host: str
    public_host: str | None
    rtp_port_min: int
    rtp_port_max: int
    bitrate: int = 32000
    log_level: str = "WARNING"
    front_port: int = 0  # where workers send the calls they dial (set once the front listens)


class WorkerHandle:
    """One worker process: its socket, its calls (by the worker's call key)."""

    def __init__(self, index: int, pool: SipPool) -> None:
        self.index = index
        self.pool = pool
        self.sock: socket.socket | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.sip_port = 0
        self.pid = 0
        self.calls: dict[int, Any] = {}  # key -> the leg (voice.sip.leg.SipLeg)
        self.reserved = 0  # INVITEs routed here whose "incoming" has not come yet
        self.ready = asyncio.get_running_loop().create_future()
        self.alive = True
        self.retiring = False
        self._out: deque[bytes] = deque()
        self._writing = False

    @property
    def load(self) -> int:
        return len(self.calls) + self.reserved

    @property
    def free(self) -> int:
        return 0 if self.retiring or not self.alive else CALLS_PER_WORKER - self.load

    @property
    def address(self) -> tuple[str, int]:
        return (self.pool.config.sip_host, self.sip_port)

    async def start(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        config = self.pool.config
        ports = _port_slice(config.rtp_port_min, config.rtp_port_max, self.index)
        args = {
            "fd": child.fileno(),
            "sip_host": config.sip_host,
            "media_host": config.media_host,
            "public_host": config.public_host,
            "rtp_port_min": ports[0],
            "rtp_port_max": ports[1],
            "bitrate": config.bitrate,
            "log_level": config.log_level,
            "front_port": config.front_port,
        }
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "voice.sip.pj",
                json.dumps(args),
                pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=None if config.log_level == "DEBUG" else asyncio.subprocess.DEVNULL,
            )
        finally:
            child.close()
        self.sock = parent
        parent.setblocking(False)
        loop = asyncio.get_running_loop()
        loop.add_reader(parent, self._readable)
        self.pool._spawn(self._watch())
        await asyncio.wait_for(asyncio.shield(self.ready), START_TIMEOUT_S)

    async def _watch(self) -> None:
        assert self.process is not None
        code = await self.process.wait()
        self._lost(f"exited with {code}")

    def _lost(self, why: str) -> None:
        if not self.alive:
            return
        self.alive = False
        if self.sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.sock)
                if self._writing:
                    asyncio.get_running_loop().remove_writer(self.sock)
            self.sock.close()
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"SIP worker {why}"))
        calls, self.calls = self.calls, {}
        if calls or not self.retiring:
            log.warning(
                "SIP worker %d (pid %d) %s: %d call(s) end", self.index, self.pid, why, len(calls)
            )
        for leg in calls.values():
            leg.worker_lost()
        self.pool._worker_gone(self)

    def _readable(self) -> None:
        sock = self.sock
        assert sock is not None
        for _ in range(256):
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                asyncio.get_running_loop().remove_reader(sock)
                return  # the process watcher reports the exit
            kind = data[:1]
            if kind == b"A":
                key, timestamp = AUDIO_OUT.unpack_from(data, 1)
                leg = self.calls.get(key)
                if leg is not None:
                    leg.audio_from_worker(data[1 + AUDIO_OUT.size :], timestamp)
            elif kind == b"J":
                try:
                    message = json.loads(data[1:])
                except ValueError:
                    continue
                self._control(message)

    def _control(self, message: dict[str, Any]) -> None:
        kind = message.get("t")
        if kind == "ready":
            self.sip_port = int(message["sip_port"])
            self.pid = int(message.get("pid", 0))
            if not self.ready.done():
                self.ready.set_result(None)
            return
        key = int(message.get("k", 0))
        if kind == "incoming":
            self.reserved = max(0, self.reserved - 1)
            self.pool.on_incoming(self, key, message)
            return
        leg = self.calls.get(key)
        if leg is None:
            return
        if kind == "media":
            leg.media_ready()
        elif kind == "progress":
            leg.progress_from_worker(int(message.get("status") or 0))
        elif kind == "answered":
            leg.answered_by_worker()
        elif kind == "dtmf":
            leg.dtmf_from_worker(str(message.get("digit", "")))
        elif kind == "ended":
            self.calls.pop(key, None)
            leg.ended_by_worker(int(message.get("status") or 0), str(message.get("reason") or ""))
            self.pool._released(self)

    # -- sending ----------------------------------------------------------------------------

    def send_json(self, message: dict[str, Any]) -> None:
        self._send(b"J" + json.dumps(message).encode(), control=True)

    def send_audio(self, key: int, payload: bytes) -> None:
        self._send(b"A" + AUDIO_IN.pack(key) + payload, control=False)

    def _send(self, data: bytes, *, control: bool) -> None:
        sock = self.sock
        if sock is None or not self.alive:
            return
        if not self._out:
            try:
                sock.send(data)
                return
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                return
        if not control:
            return  # late audio is worthless: drop it rather than queue it
        self._out.append(data)
        if not self._writing:
            self._writing = True
            asyncio.get_running_loop().add_writer(sock, self._flush)

    def _flush(self) -> None:
        sock = self.sock
        assert sock is not None
        while self._out:
            try:
                sock.send(self._out[0])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._out.clear()
                break
            self._out.popleft()
        self._writing = False
        asyncio.get_running_loop().remove_writer(sock)

    def stop(self) -> None:
        self.retiring = True
        self.send_json({"t": "stop"})

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


def _port_slice(low: int, high: int, index: int, size: int = 40) -> tuple[int, int]:
    """Worker `index`'s share of the RTP range: 40 ports (4 calls need 8; pjsua2 skips
    ports it cannot bind, e.g. ones a room took)."""
    span = max(size, high - low + 1)
    slots = max(1, span // size)
    start = low + (index % slots) * size
    return start, min(high, start + size - 1)


class SipPool:
    def __init__(
        self,
        config: WorkerConfig,
        *,
        max_workers: int,
        spare_slots: int = CALLS_PER_WORKER,
        on_incoming: Callable[[WorkerHandle, int, dict[str, Any]], None],
    ) -> None:
        self.config = config
        self.max_workers = max_workers
        self.spare_slots = spare_slots
        self.on_incoming = on_incoming
        self.workers: list[WorkerHandle] = []
        self._starting: set[asyncio.Task[Any]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._next_index = 0
        self._closed = False
        self.started = 0
        self.crashed = 0

    async def start(self) -> None:
        await self._grow()

    @property
    def free_slots(self) -> int:
        return sum(w.free for w in self.workers)

    def by_address(self, address: tuple[str, int]) -> WorkerHandle | None:
        for worker in self.workers:
            if worker.alive and worker.address == address[:2]:
                return worker
        return None

    async def reserve(self, timeout: float = 10.0) -> WorkerHandle | None:
        """A worker with a free slot for a new call (the slot is held until its INVITE
        arrives there); None when the pool is full and stays full for `timeout` s."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._closed:
            candidates = [w for w in self.workers if w.free > 0 and w.ready.done()]
            if candidates:
                worker = max(candidates, key=lambda w: (w.load, -w.index))  # pack calls
                worker.reserved += 1
                self._spawn(self._grow())
                return worker
            self._spawn(self._grow())
            if asyncio.get_running_loop().time() > deadline:
                return None
            await asyncio.sleep(0.05)
        return None

    def unreserve(self, worker: WorkerHandle) -> None:
        worker.reserved = max(0, worker.reserved - 1)

    async def _grow(self) -> None:
        """Start workers until `spare_slots` are free (counting those starting)."""
        while not self._closed:
            starting = len(self._starting) * CALLS_PER_WORKER
            alive = [w for w in self.workers if w.alive and not w.retiring]
            if (
                self.free_slots + starting >= self.spare_slots
                or len(alive) + len(self._starting) >= self.max_workers
            ):
                return
            task = asyncio.get_running_loop().create_task(self._start_one())
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)
            await asyncio.sleep(0)

    async def _start_one(self) -> None:
        worker = WorkerHandle(self._free_index(), self)
        self.workers.append(worker)
        try:
            await worker.start()
        except Exception as exc:
            log.error("could not start a SIP worker: %s", exc)
            worker.kill()
            worker.alive = False
            if worker in self.workers:
                self.workers.remove(worker)
            return
        self.started += 1
        log.info(
            "SIP worker %d started (pid %d, port %d)", worker.index, worker.pid, worker.sip_port
        )

    def _free_index(self) -> int:
        used = {w.index for w in self.workers}
        index = 0
        while index in used:
            index += 1
        return index

    def _released(self, worker: WorkerHandle) -> None:
        """A call ended: retire an idle worker if enough room stays elsewhere."""
        if worker.load == 0 and not worker.retiring:
            others = sum(w.free for w in self.workers if w is not worker)
            if others >= self.spare_slots:
                worker.stop()

    def _worker_gone(self, worker: WorkerHandle) -> None:
        if worker in self.workers:
            self.workers.remove(worker)
        if not worker.retiring:
            self.crashed += 1
        if not self._closed:
            self._spawn(self._grow())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._starting):
            task.cancel()
        for worker in list(self.workers):
            worker.stop()
        deadline = asyncio.get_running_loop().time() + 3.0
        while any(w.process and w.process.returncode is None for w in self.workers):
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
        for worker in list(self.workers):
            worker.kill()
            if worker.process is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(worker.process.wait(), 2.0)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._starting, return_exceptions=True)
