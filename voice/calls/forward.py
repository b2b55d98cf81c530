"""Requests about a call that reach a node other than the one carrying it.

A call's state is in the bus, readable on every node, but its media legs, timers and lock live
on the node that placed it (`LiveCall.node`). A request that needs them (answer, decline, hang
up, keys, a callee's device coming or going while the call rings) and lands elsewhere is sent
to that node (`voice.rpc`) and run there as if it had been made there: the same checks (the
user must be a party to the call), under the same lock, with the same answer or error.

Only the user's id travels (the nodes of a deployment trust each other: they share Redis);
the carrying node reads the user from the shared database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from voice.errors import NotFound
from voice.rpc import NodeRpc
from voice.store import UserInfo

if TYPE_CHECKING:
    from voice.calls.controller import CallController

# The controller's requests run on the carrying node; each takes (user, call_id, **args).
REQUESTS = ("answer", "decline", "hangup", "send_dtmf")
# Opening the callee's leg may gather ICE candidates through STUN servers (up to ~5 s), so an
# answer may take longer than other requests before the carrying node has its SDP.
ANSWER_TIMEOUT_S = 15.0


async def request(
    rpc: NodeRpc, node: str, what: str, user: UserInfo, call_id: str, **args: Any
) -> Any:
    timeout = ANSWER_TIMEOUT_S if what == "answer" else None
    message = {"user": user.id, "call_id": call_id, **args}
    return await rpc.call(node, f"calls.{what}", message, timeout_s=timeout)


async def device_moved(rpc: NodeRpc, node: str, call_id: str, device: str, joined: bool) -> None:
    args = {"call_id": call_id, "device": device, "joined": joined}
    await rpc.call(node, "calls.device_moved", args)


def serve(rpc: NodeRpc, calls: CallController) -> None:
    """Takes the requests other nodes forward about the calls this node carries."""

    def run(what: str) -> Any:
        async def handler(args: dict[str, Any]) -> Any:
            args = dict(args)
            user = await calls.store.user_by_id(args.pop("user"))
            if user is None:
                raise NotFound("no such call", code="call_not_found")
            return await getattr(calls, what)(user, args.pop("call_id"), **args)

        return handler

    for what in REQUESTS:
        rpc.handle(f"calls.{what}", run(what))

    async def moved(args: dict[str, Any]) -> None:
        await calls.device_moved(args["call_id"], args["device"], joined=args["joined"])

    rpc.handle("calls.device_moved", moved)
