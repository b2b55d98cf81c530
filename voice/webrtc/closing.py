"""Closing an aiortc peer connection so that nothing of it is left running.

Used by our legs, and by clients (tests, benchmarks) that must not leak either.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc import RTCPeerConnection


async def close_peer_connection(pc: RTCPeerConnection, timeout: float = 5.0) -> None:
    """Close `pc` and the tasks aiortc and aioice started for it but keep no handle on.

    - `setLocalDescription` spawns `RTCPeerConnection.__connect` with a bare ensure_future;
      after `close()` it is still unwinding ICE for a moment: wait for it.
    - aioice 0.13 starts its consent-freshness task at the end of `Connection.connect()`
      even when `close()` ran in the meantime (a window of up to 20 ms, hit when a call
      is hung up just as ICE completes). That task would then sleep-loop forever on the
      closed connection: cancel it.
    """
    await pc.close()
    mine = [task for task in asyncio.all_tasks() if _task_owner(task) is pc]
    if mine:
        await asyncio.wait(mine, timeout=timeout)
    transports = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    connections = [dtls.transport._connection for dtls in transports]
    stray = [
        task
        for task in asyncio.all_tasks()
        if any(_task_owner(task) is connection for connection in connections)
    ]
    for task in stray:
        task.cancel()
    if stray:
        await asyncio.wait(stray, timeout=timeout)


def _task_owner(task: asyncio.Task[Any]) -> object:
    """The `self` of the method a task runs, if any."""
    frame = getattr(task.get_coro(), "cr_frame", None)
    return frame.f_locals.get("self") if frame is not None else None
