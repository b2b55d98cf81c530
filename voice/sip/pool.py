"""The pool of pjsua2 worker processes, seen from the API process.

Each worker (`voice.sip.pj`) carries at most `CALLS_PER_WORKER` calls, the pjsua2 wheel's
compile-time limit. Workers are forked by one `voice.sip.forkserver` process that has done the
imports (a few ms each instead of ~0.25 s of CPU for a fresh interpreter), so a burst of
INVITEs can be met by starting workers while they wait. The pool packs calls onto the busiest
worker that has room, keeps `spare_slots` free slots ready plus one per INVITE waiting for a
slot, retires workers left idle beyond that, and replaces a worker that dies: its calls end
(`failed`) and nothing else notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("chorus.sip")

CALLS_PER_WORKER = 4
AUDIO_IN = struct.Struct("!H")
AUDIO_OUT = struct.Struct("!HI")
START_TIMEOUT_S = 20.0
# A slot held for an INVITE is given back if the worker has not reported the call by then
# (it refused or lost the INVITE): the client transaction's own timeout (RFC 3261 Timer B).
RESERVATION_TTL_S = 32.0
PORTS_PER_WORKER = 40  # 4 calls need 8 (RTP + RTCP); pjsua2 skips ports it cannot bind


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
        self.sip_port = 0
        self.pid = 0
        self.calls: dict[int, Any] = {}  # key -> the leg (voice.sip.leg.SipLeg)
        self.reserved: deque[float] = deque()  # expiry of each slot held for an INVITE
        self.ready = asyncio.get_running_loop().create_future()
        self.alive = True
        self.retiring = False
        self._out: deque[bytes] = deque()
        self._writing = False

    @property
    def load(self) -> int:
        while self.reserved and self.reserved[0] < time.monotonic():
            self.reserved.popleft()  # its INVITE never became a call here
        return len(self.calls) + len(self.reserved)

    @property
    def free(self) -> int:
        return 0 if self.retiring or not self.alive else CALLS_PER_WORKER - self.load

    @property
    def address(self) -> tuple[str, int]:
        return (self.pool.config.sip_host, self.sip_port)

    async def start(self, forkserver: Forkserver) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        config = self.pool.config
        ports = _port_slice(
            config.rtp_port_min, config.rtp_port_max, self.index, self.pool.max_workers
        )
        args = {
            "sip_host": config.sip_host,
            "media_host": config.media_host,
            "public_host": config.public_host,
            "rtp_port_min": ports[0],
            "rtp_port_max": ports[1],
            "bitrate": config.bitrate,
            "log_level": config.log_level,
            "front_port": config.front_port,
        }
        self.sock = parent
        parent.setblocking(False)
        try:
            forkserver.fork(args, child)
        finally:
            child.close()  # the worker's socket closes when the worker exits: that is our watch
        asyncio.get_running_loop().add_reader(parent, self._readable)
        await asyncio.wait_for(asyncio.shield(self.ready), START_TIMEOUT_S)

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
        if not self.ready.done():  # it never started: a failed start, not a crash
            self.ready.set_exception(RuntimeError(f"SIP worker {why}"))
            self.pool._worker_gone(self, started=False)
            return
        calls, self.calls = self.calls, {}
        if calls or not self.retiring:
            log.warning(
                "SIP worker %d (pid %d) %s: %d call(s) end", self.index, self.pid, why, len(calls)
            )
        for leg in calls.values():
            leg.worker_lost()
        self.pool._worker_gone(self, started=True)

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
                self._lost("exited")  # the forkserver reports how (pool log)
                return
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
            if self.reserved:
                self.reserved.popleft()
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
            self.pool._notify()  # a slot is free: wake the INVITEs waiting for one

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
        if self.pid and self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def _port_slice(low: int, high: int, index: int, workers: int) -> tuple[int, int]:
    """Worker `index`'s share of the RTP range: up to 40 ports, fewer when `workers` slices of
    40 do not fit, so no two live workers share ports while the range allows 8 each."""
    span = high - low + 1
    size = max(8, min(PORTS_PER_WORKER, span // max(1, workers)))
    slots = max(1, span // size)
    start = low + (index % slots) * size
    return start, min(high, start + size - 1)


class Forkserver:
    """The pool's side of `voice.sip.forkserver`: started once, restarted if it dies."""

    def __init__(self, pool: SipPool) -> None:
        self.pool = pool
        self.sock: socket.socket | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def alive(self) -> bool:
        return (
            self.sock is not None and self.process is not None and self.process.returncode is None
        )

    async def start(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        debug = self.pool.config.log_level == "DEBUG"
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "voice.sip.forkserver",
                str(child.fileno()),
                pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=None if debug else asyncio.subprocess.DEVNULL,
                # one thread when it forks: numpy's BLAS would start one per core for nothing
                env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
            )
        finally:
            child.close()
        self.sock = parent
        parent.setblocking(False)
        asyncio.get_running_loop().add_reader(parent, self._readable)
        try:
            await asyncio.wait_for(asyncio.shield(self.ready), START_TIMEOUT_S)
        except Exception:
            self.close()
            if not self.ready.done():
                self.ready.set_exception(RuntimeError("the SIP forkserver did not start"))
                self.ready.exception()  # raised here already: no "never retrieved" warning
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            raise

    def fork(self, config: dict[str, Any], child: socket.socket) -> None:
        if self.sock is None or not self.alive:
            raise RuntimeError("the SIP forkserver is not running")
        socket.send_fds(self.sock, [json.dumps(config).encode()], [child.fileno()])

    def _readable(self) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            if not self.ready.done():
                self.ready.set_exception(RuntimeError("the SIP forkserver exited"))
            if not self.pool._closed:
                log.error("the SIP forkserver exited; its workers' calls end")
            return
        message = json.loads(data)
        if message.get("t") == "ready":
            self.ready.set_result(None)
        elif message.get("t") == "exit":
            self.pool._exited(int(message["pid"]), int(message["code"]))

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.sock)
            self.sock.close()  # the server leaves when its socket closes
            self.sock = None


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
        self.forkserver: Forkserver | None = None
        self._waiting = 0  # INVITEs (or dials) waiting for a slot
        self._room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._starting: set[asyncio.Task[Any]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._next_index = 0
        self._closed = False
        self.started = 0
        self.crashed = 0
        span = config.rtp_port_max - config.rtp_port_min + 1
        if span < max_workers * 8:
            log.warning(
                "RTP range %d-%d is too small for %d SIP workers (8 ports each): some share",
                config.rtp_port_min,
                config.rtp_port_max,
                max_workers,
            )

    async def start(self) -> None:
        await self._grow()
        await asyncio.gather(*self._starting, return_exceptions=True)

    async def _forkserver(self) -> Forkserver:
        """The running forkserver, (re)started when needed; one start at a time."""
        server = self.forkserver
        if server is None or (server.ready.done() and not server.alive):
            if server is not None:
                server.close()
            server = self.forkserver = Forkserver(self)
            await server.start()
        else:
            await asyncio.shield(server.ready)
        return server

    @property
    def free_slots(self) -> int:
        """Free slots, counting those of workers being started (they are in `workers`)."""
        return sum(w.free for w in self.workers)

    def by_address(self, address: tuple[str, int]) -> WorkerHandle | None:
        for worker in self.workers:
            if worker.alive and worker.address == address[:2]:
                return worker
        return None

    async def reserve(self, timeout: float = 10.0) -> WorkerHandle | None:
        """A worker with a free slot for a new call (the slot is held until its INVITE
        arrives there); None when the pool is full and stays full for `timeout` s. While it
        waits, the INVITE counts as demand, so workers start for it (in parallel)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._waiting += 1
        try:
            while not self._closed:
                candidates = [w for w in self.workers if w.free > 0 and w.ready.done()]
                if candidates:
                    worker = max(candidates, key=lambda w: (w.load, -w.index))  # pack calls
                    worker.reserved.append(time.monotonic() + RESERVATION_TTL_S)
                    self._grow_soon()  # keep the spares
                    return worker
                self._grow_soon()
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                # woken when a worker is ready or a slot frees; no polling
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._room), remaining)
            return None
        finally:
            self._waiting -= 1

    def unreserve(self, worker: WorkerHandle) -> None:
        if worker.reserved:
            worker.reserved.pop()

    def _notify(self) -> None:
        """Wake everyone waiting in `reserve`: a slot may be free."""
        if not self._room.done():
            self._room.set_result(None)
        self._room = asyncio.get_running_loop().create_future()

    def _grow_soon(self) -> None:
        if not self._closed:
            self._spawn(self._grow())

    async def _grow(self) -> None:
        """Start workers, all at once, until `spare_slots` plus one slot per waiting INVITE
        are free (counting workers being started)."""
        while not self._closed:
            active = sum(1 for w in self.workers if w.alive and not w.retiring)
            wanted = self.spare_slots + self._waiting
            if self.free_slots >= wanted or active >= self.max_workers:
                return
            # in `workers` at once, so its slots count as free for the next round
            worker = WorkerHandle(self._free_index(), self)
            self.workers.append(worker)
            task = asyncio.get_running_loop().create_task(self._start_one(worker))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _start_one(self, worker: WorkerHandle) -> None:
        try:
            await worker.start(await self._forkserver())
        except Exception as exc:
            log.error("could not start a SIP worker: %s", exc)
            worker.kill()
            worker._lost(f"did not start ({exc})")
            return
        self.started += 1
        log.info(
            "SIP worker %d started (pid %d, port %d)", worker.index, worker.pid, worker.sip_port
        )
        self._notify()

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

    def _worker_gone(self, worker: WorkerHandle, *, started: bool) -> None:
        if worker in self.workers:
            self.workers.remove(worker)
        if started:  # a failed start is not retried here (no loop if forks keep failing)
            if not worker.retiring:
                self.crashed += 1
            self._grow_soon()

    def _exited(self, pid: int, code: int) -> None:
        """The forkserver reaped a worker: say how a crash ended (e.g. -6, a pjsua2 assert)."""
        if code != 0 and not self._closed:
            how = f"signal {-code}" if code < 0 else f"status {code}"
            with contextlib.suppress(ValueError):
                how = f"signal {signal.Signals(-code).name}" if code < 0 else how
            log.warning("SIP worker pid %d ended by %s", pid, how)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self._closed = True
        self._notify()
        for task in list(self._starting):
            task.cancel()
        for worker in list(self.workers):
            worker.stop()
        deadline = asyncio.get_running_loop().time() + 3.0
        while any(w.alive for w in self.workers):  # a worker's socket closes when it exits
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
        for worker in list(self.workers):
            worker.kill()
        server = self.forkserver
        if server is not None:
            server.close()
            if server.process is not None:
                try:
                    await asyncio.wait_for(server.process.wait(), 2.0)
                except TimeoutError:
                    server.process.kill()
                    await server.process.wait()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._starting, return_exceptions=True)
