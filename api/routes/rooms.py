"""Audio rooms (API.md "Rooms"): create, join by WebRTC or plain RTP, moderate, record.

A request is made by a user (bearer token) or the admin (the admin key), who may do whatever
a room's moderator may. Rooms are invisible (404) to anyone who neither moderates them nor
has a participant in them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from api.deps import RuntimeDep
from api.routes.ringback import Principal, Who
from api.schemas import Ok
from api.schemas import Request as StrictRequest
from conference.recording import RecordingInfo
from conference.room import Actor, Participant
from conference.service import DEFAULT_SPEAKERS, RecordingFile, RoomView

router = APIRouter(prefix="/v1/rooms", tags=["rooms"])

RoomId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
ParticipantId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
RecordingId = Annotated[str, Path(pattern=r"^[a-z0-9]{16}$")]


# ---------------------------------------------------------------------------- shapes


class RoomCreate(StrictRequest):
    name: str | None = Field(None, max_length=100)
    pin: str | None = Field(None, description="4 to 16 digits; joining then needs it")
    max_participants: int | None = Field(None, ge=2, description="default: the server's limit")
    record: bool = Field(False, description="record the room mix (Ogg Opus in the data dir)")
    max_speakers: Annotated[int, Field(ge=1, le=64)] | Literal["all"] | None = Field(
        None, description='talkers mixed at once (K, default 3); "all" mixes everyone'
    )


class WebRtcJoin(StrictRequest):
    sdp: str = Field(min_length=1, max_length=65536)
    pin: str | None = Field(None, max_length=32)
    display: str | None = Field(None, max_length=200)


class RtpJoin(StrictRequest):
    host: str = Field(min_length=2, max_length=45, description="IP address of the endpoint")
    port: int = Field(ge=1, le=65535)
    codec: Literal["opus", "pcmu", "pcma"]
    payload_type: int | None = Field(None, ge=0, le=127, description="default 0/8/111")
    display: str | None = Field(None, max_length=200)
    rtcp_mux: bool = Field(False, description="send RTCP to `port` instead of `port` + 1")
    audio_level_id: int | None = Field(
        None, ge=1, le=14, description="RFC 6464 header-extension id the endpoint sends, if any"
    )


class MuteChange(StrictRequest):
    muted: bool


class ParticipantOut(BaseModel):
    participant_id: str
    display: str
    muted: bool
    kind: str
    muted_by_moderator: bool
    codec: str
    joined_at: datetime
    mine: bool = Field(description="this participant is the caller's own")


class RoomOut(BaseModel):
    room_id: str
    name: str
    participants: list[ParticipantOut]
    speaking: list[str]
    moderator: bool = Field(description="the caller moderates this room")
    pin_required: bool
    locked: bool
    record: bool
    max_participants: int
    max_speakers: int | None = Field(description="K; null: everyone who talks is mixed")
    created_at: datetime


class WebRtcJoined(BaseModel):
    participant_id: str
    sdp: str


class RtpJoined(BaseModel):
    participant_id: str
    server_host: str
    server_port: int


class ParticipantGone(BaseModel):
    participant_id: str
    reason: str


class RecordingOut(BaseModel):
    recording_id: str
    room_id: str
    started_at: datetime
    ended_at: datetime | None
    duration_s: float
    bytes: int
    url: str


def _time(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _actor(who: Principal) -> Actor:
    return Actor(user_id=who.user.id if who.user else None, admin=who.admin)


def _participant(p: Participant, actor: Actor) -> ParticipantOut:
    return ParticipantOut(
        participant_id=p.participant_id,
        display=p.display,
        muted=p.muted,
        kind=p.kind,
        muted_by_moderator=p.muted_by_moderator,
        codec=p.codec,
        joined_at=_time(p.joined_at),
        mine=p.kind == "webrtc" and actor.user_id is not None and p.user_id == actor.user_id,
    )


def room_out(view: RoomView, actor: Actor) -> RoomOut:
    room = view.room
    return RoomOut(
        room_id=room.room_id,
        name=room.name,
        participants=[_participant(p, actor) for p in room.participants],
        speaking=list(view.speaking),
        moderator=room.is_manager(actor),
        pin_required=room.has_pin,
        locked=room.locked,
        record=room.record,
        max_participants=room.max_participants,
        max_speakers=room.max_speakers,
        created_at=_time(room.created_at),
    )


def recording_out(info: RecordingInfo) -> RecordingOut:
    return RecordingOut(
        recording_id=info.recording_id,
        room_id=info.room_id,
        started_at=_time(info.started_at),
        ended_at=_time(info.ended_at) if info.ended_at is not None else None,
        duration_s=info.duration_s,
        bytes=info.bytes,
        url=f"/v1/rooms/{info.room_id}/recordings/{info.recording_id}",
    )


# ---------------------------------------------------------------------------- rooms


@router.post("", status_code=201, response_model=RoomOut)
async def create_room(body: RoomCreate, who: Who, runtime: RuntimeDep) -> RoomOut:
    actor = _actor(who)
    speakers: int | str | None = body.max_speakers
    if speakers is None:
        speakers = DEFAULT_SPEAKERS
    elif speakers == "all":
        speakers = None
    view = await runtime.rooms.create(
        actor,
        name=body.name,
        pin=body.pin,
        max_participants=body.max_participants,
        max_speakers=speakers,
        record=body.record,
    )
    return room_out(view, actor)


@router.get("", response_model=list[RoomOut])
async def list_rooms(who: Who, runtime: RuntimeDep) -> list[RoomOut]:
    actor = _actor(who)
    return [room_out(view, actor) for view in await runtime.rooms.list(actor)]


@router.get("/{room_id}", response_model=RoomOut)
async def get_room(room_id: RoomId, who: Who, runtime: RuntimeDep) -> RoomOut:
    actor = _actor(who)
    return room_out(await runtime.rooms.get(actor, room_id), actor)


@router.delete("/{room_id}", response_model=Ok)
async def end_room(room_id: RoomId, who: Who, runtime: RuntimeDep) -> Ok:
    await runtime.rooms.end(_actor(who), room_id)
    return Ok()


@router.post("/{room_id}/lock", response_model=RoomOut)
async def lock_room(room_id: RoomId, who: Who, runtime: RuntimeDep) -> RoomOut:
    actor = _actor(who)
    await runtime.rooms.set_locked(actor, room_id, True)
    return room_out(await runtime.rooms.get(actor, room_id), actor)


@router.post("/{room_id}/unlock", response_model=RoomOut)
async def unlock_room(room_id: RoomId, who: Who, runtime: RuntimeDep) -> RoomOut:
    actor = _actor(who)
    await runtime.rooms.set_locked(actor, room_id, False)
    return room_out(await runtime.rooms.get(actor, room_id), actor)


@router.post("/{room_id}/mute_all", response_model=RoomOut)
async def mute_all(room_id: RoomId, who: Who, runtime: RuntimeDep) -> RoomOut:
    """Mutes everyone but the moderator; they cannot unmute themselves until the moderator
    unmutes them (one by one, or all with `unmute_all`)."""
    actor = _actor(who)
    await runtime.rooms.mute_all(actor, room_id, True)
    return room_out(await runtime.rooms.get(actor, room_id), actor)


@router.post("/{room_id}/unmute_all", response_model=RoomOut)
async def unmute_all(room_id: RoomId, who: Who, runtime: RuntimeDep) -> RoomOut:
    actor = _actor(who)
    await runtime.rooms.mute_all(actor, room_id, False)
    return room_out(await runtime.rooms.get(actor, room_id), actor)


# ---------------------------------------------------------------------------- participants


@router.post("/{room_id}/participants", status_code=201, response_model=WebRtcJoined)
async def join_webrtc(
    room_id: RoomId, body: WebRtcJoin, who: Who, runtime: RuntimeDep
) -> WebRtcJoined:
    actor = _actor(who)
    user = who.user
    participant, answer = await runtime.rooms.join_webrtc(
        actor,
        room_id,
        sdp=body.sdp,
        pin=body.pin,
        display=body.display,
        default_display=user.display_name if user else "guest",
    )
    return WebRtcJoined(participant_id=participant.participant_id, sdp=answer)


@router.post("/{room_id}/rtp", status_code=201, response_model=RtpJoined)
async def join_rtp(room_id: RoomId, body: RtpJoin, who: Who, runtime: RuntimeDep) -> RtpJoined:
    participant, host, port = await runtime.rooms.join_rtp(
        _actor(who),
        room_id,
        host=body.host,
        port=body.port,
        codec=body.codec,
        payload_type=body.payload_type,
        display=body.display,
        rtcp_mux=body.rtcp_mux,
        audio_level_id=body.audio_level_id,
    )
    return RtpJoined(participant_id=participant.participant_id, server_host=host, server_port=port)


@router.patch("/{room_id}/participants/{participant_id}", response_model=ParticipantOut)
async def mute_participant(
    room_id: RoomId, participant_id: ParticipantId, body: MuteChange, who: Who, runtime: RuntimeDep
) -> ParticipantOut:
    actor = _actor(who)
    participant = await runtime.rooms.set_muted(actor, room_id, participant_id, body.muted)
    return _participant(participant, actor)


@router.delete("/{room_id}/participants/{participant_id}", response_model=ParticipantGone)
async def remove_participant(
    room_id: RoomId, participant_id: ParticipantId, who: Who, runtime: RuntimeDep
) -> ParticipantGone:
    reason = await runtime.rooms.remove(_actor(who), room_id, participant_id)
    return ParticipantGone(participant_id=participant_id, reason=reason)


# ---------------------------------------------------------------------------- recordings


@router.get("/{room_id}/recordings", response_model=list[RecordingOut])
async def list_recordings(room_id: RoomId, who: Who, runtime: RuntimeDep) -> list[RecordingOut]:
    infos = await runtime.rooms.recordings_of(_actor(who), room_id)
    return [recording_out(info) for info in infos]


@router.get("/{room_id}/recordings/{recording_id}", response_class=FileResponse)
async def download_recording(
    room_id: RoomId, recording_id: RecordingId, who: Who, runtime: RuntimeDep
) -> Response:
    actor = _actor(who)
    found = await runtime.rooms.recording_file(actor, room_id, recording_id)
    return await _recording(runtime, actor, room_id, found)


@router.get("/{room_id}/recording", response_class=FileResponse)
async def download_latest_recording(room_id: RoomId, who: Who, runtime: RuntimeDep) -> Response:
    """The latest finished recording of the room (or the one in progress)."""
    actor = _actor(who)
    found = await runtime.rooms.recording_file(actor, room_id, None)
    return await _recording(runtime, actor, room_id, found)


async def _recording(
    runtime: RuntimeDep, actor: Actor, room_id: str, found: RecordingFile
) -> Response:
    """The file, from this node's data dir or streamed from the node that recorded it."""
    filename = f"room-{room_id}-{found.info.recording_id}.opus"
    if found.path is not None:
        return FileResponse(found.path, media_type="audio/ogg", filename=filename)
    chunks = await runtime.rooms.read_recording(actor, found)
    disposition = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return StreamingResponse(chunks, media_type="audio/ogg", headers=disposition)
