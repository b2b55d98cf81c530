"""Requests about a room that reach a node other than the one mixing it.

A room's state is in the bus, readable and writable on every node, but its media live on the
node that mixes it (`Room.node`): the participants' legs (so the answer SDP and the RTP port
a participant is given are that node's), the engine's channels, the recorder, and the lock
that orders the room's changes. So joining, muting, kicking or leaving, locking, muting all
and ending are sent to that node (`voice.rpc`) and run there as if they had been made
there: the same checks, under the same lock, with the same answer or error. Reading a room
(`get`, `list`) stays where it lands.

Recordings are files in the data dir of the node that mixed the room at the time (a room
taken over after its node died records its next session elsewhere), so each node that
records a room notes itself in the bus, and listing or downloading a recording asks those
nodes: a list of what each holds, then the file in chunks.

Only the actor's user id and admin flag travel (the nodes of a deployment trust each other:
they share Redis); the mixing node checks them as it checks its own requests.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from conference.recording import RecordingInfo
from conference.room import Actor, Participant, Room
from voice.rpc import NodeRpc

if TYPE_CHECKING:
    from conference.service import RoomService

# The service's requests that run on the mixing node; each takes (actor, room_id, **args).
# Each result crosses as JSON: how it is written there and read back here.
_Codec = tuple[Callable[[Any], Any], Callable[[Any], Any]]
REQUESTS: dict[str, _Codec] = {
    "join_webrtc": (
        lambda r: {"participant": r[0].to_message(), "sdp": r[1]},
        lambda m: (Participant.from_message(m["participant"]), m["sdp"]),
    ),
    "join_rtp": (
        lambda r: {"participant": r[0].to_message(), "host": r[1], "port": r[2]},
        lambda m: (Participant.from_message(m["participant"]), m["host"], int(m["port"])),
    ),
    "set_muted": (lambda r: r.to_message(), Participant.from_message),
    "mute_all": (
        lambda r: [p.to_message() for p in r],
        lambda m: [Participant.from_message(p) for p in m],
    ),
    "set_locked": (lambda r: r.to_message(), Room.from_message),
    "remove": (str, str),
    "end": (lambda r: None, lambda m: None),
}
# Opening a WebRTC leg may gather ICE candidates through STUN servers (up to ~5 s).
JOIN_TIMEOUT_S = 15.0
CHUNK_BYTES = 256 * 1024  # of a recording per request (a Redis message of ~350 kB)


def _actor(actor: Actor) -> dict[str, Any]:
    return {"user_id": actor.user_id, "admin": actor.admin}


async def request(
    rpc: NodeRpc, node: str, what: str, actor: Actor, room_id: str, **args: Any
) -> Any:
    timeout = JOIN_TIMEOUT_S if what == "join_webrtc" else None
    message = {"actor": _actor(actor), "room_id": room_id, **args}
    found = await rpc.call(node, f"rooms.{what}", message, timeout_s=timeout)
    return REQUESTS[what][1](found)


async def recordings(rpc: NodeRpc, node: str, actor: Actor, room_id: str) -> list[RecordingInfo]:
    """The recordings of the room that `node` holds and `actor` may have."""
    found = await rpc.call(node, "rooms.recordings", {"actor": _actor(actor), "room_id": room_id})
    return [RecordingInfo(**info) for info in found]


async def recording_chunk(
    rpc: NodeRpc, node: str, actor: Actor, room_id: str, recording_id: str, offset: int
) -> bytes:
    """Up to CHUNK_BYTES of the recording from `offset`; empty at its end."""
    args = {
        "actor": _actor(actor),
        "room_id": room_id,
        "recording_id": recording_id,
        "offset": offset,
        "size": CHUNK_BYTES,
    }
    found = await rpc.call(node, "rooms.recording_chunk", args)
    return base64.b64decode(found["data"])


def serve(rpc: NodeRpc, rooms: RoomService) -> None:
    """Takes the requests other nodes forward about the rooms this node mixes."""

    def run(what: str) -> Any:
        encode = REQUESTS[what][0]

        async def handler(args: dict[str, Any]) -> Any:
            args = dict(args)
            actor = Actor(**args.pop("actor"))
            return encode(await getattr(rooms, what)(actor, args.pop("room_id"), **args))

        return handler

    for what in REQUESTS:
        rpc.handle(f"rooms.{what}", run(what))

    async def listed(args: dict[str, Any]) -> list[dict[str, Any]]:
        actor = Actor(**args["actor"])
        return [asdict(info) for info in rooms.recordings_here(actor, args["room_id"])]

    async def chunk(args: dict[str, Any]) -> dict[str, str]:
        actor = Actor(**args["actor"])
        size = min(int(args["size"]), CHUNK_BYTES)
        data = await rooms.recording_chunk_here(
            actor, args["room_id"], args["recording_id"], int(args["offset"]), size
        )
        return {"data": base64.b64encode(data).decode("ascii")}

    rpc.handle("rooms.recordings", listed)
    rpc.handle("rooms.recording_chunk", chunk)
