from __future__ import annotations

from fastapi import APIRouter, Query

from api.deps import CurrentUser, RuntimeDep
from api.schemas import CallAnswer, CallCreate, CallCreated, CallPublic, Dtmf, Ok, SdpAnswer
from voice.calls.controller import CallView

router = APIRouter(prefix="/v1/calls", tags=["calls"])


def public(view: CallView) -> CallPublic:
    return CallPublic(
        call_id=view.call_id,
        from_=view.from_,
        to=view.to,
        state=view.state,
        reason=view.reason,
        started_at=view.started_at,
        answered_at=view.answered_at,
        ended_at=view.ended_at,
    )


@router.post("", status_code=201, response_model=CallCreated, response_model_exclude_none=True)
async def place_call(body: CallCreate, user: CurrentUser, runtime: RuntimeDep) -> CallCreated:
    live, answer = await runtime.calls.place(user, body.to, body.sdp)
    call = live.call
    reason = call.reason.value if call.reason else None
    return CallCreated(call_id=call.call_id, state=call.state.value, reason=reason, sdp=answer)


@router.get("", response_model=list[CallPublic])
async def history(
    user: CurrentUser, runtime: RuntimeDep, limit: int = Query(50, ge=1, le=500)
) -> list[CallPublic]:
    return [public(v) for v in await runtime.calls.history(user, limit)]


@router.get("/{call_id}", response_model=CallPublic)
async def get_call(call_id: str, user: CurrentUser, runtime: RuntimeDep) -> CallPublic:
    return public(await runtime.calls.view(user, call_id))


@router.post("/{call_id}/answer", response_model=SdpAnswer)
async def answer(
    call_id: str, body: CallAnswer, user: CurrentUser, runtime: RuntimeDep
) -> SdpAnswer:
    return SdpAnswer(sdp=await runtime.calls.answer(user, call_id, body.sdp, body.device_id))


@router.post("/{call_id}/decline", response_model=Ok)
async def decline(call_id: str, user: CurrentUser, runtime: RuntimeDep) -> Ok:
    await runtime.calls.decline(user, call_id)
    return Ok()


@router.post("/{call_id}/hangup", response_model=Ok)
async def hangup(call_id: str, user: CurrentUser, runtime: RuntimeDep) -> Ok:
    await runtime.calls.hangup(user, call_id)
    return Ok()


@router.post("/{call_id}/dtmf", response_model=Ok)
async def dtmf(call_id: str, body: Dtmf, user: CurrentUser, runtime: RuntimeDep) -> Ok:
    await runtime.calls.send_dtmf(user, call_id, body.digits)
    return Ok()
