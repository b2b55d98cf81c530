"""Media worker processes: legs and rooms live in them, the API process drives them.

`MediaWorkers` (parent side) starts and supervises the workers; `RemoteLeg` is a worker's
WebRTC leg as the call controller sees it; `host.serve` is a worker's main loop."""

from voice.workers.legs import RemoteLeg
from voice.workers.pool import MediaWorkers, WorkerLink, WorkerLost
from voice.workers.wire import ClipRef, Ref

__all__ = ["ClipRef", "MediaWorkers", "Ref", "RemoteLeg", "WorkerLink", "WorkerLost"]
