"""The composition root: builds every component from the one Settings object and wires the
services into the ports `voice` declares. Nothing else constructs engines, buses or legs."""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conference.engine import EngineConfig
from conference.media import LocalMedia, WorkerMedia
from conference.recording import RecordingStore
from conference.service import RoomService, RoomSettings
from hotline.agents import AgentDesk
from hotline.samples import install_samples
from hotline.service import HotlineService
from hotline.tts import EspeakEngine, Speaker
from ringback.box import ToneBox
from ringback.catalog import Catalog
from ringback.service import RingbackService
from voice.accounts import Accounts
from voice.bus import Bus, LocalBus
from voice.bus.redis import RedisBus
from voice.calls.controller import CallController, Leg
from voice.calls.progress import ProgressTones
from voice.clips import ClipLibrary
from voice.media.opus import OpusClip
from voice.metrics import Metrics
from voice.nodes import NodeBeat, new_node_id
from voice.rpc import NodeRpc
from voice.rtp import RtpPorts
from voice.settings import Settings
from voice.sip.registrar import Registrar
from voice.sip.service import SipConfig, SipService
from voice.sip.trunks import Trunk
from voice.store import Store
from voice.webrtc import WebRtcConfig, WebRtcLeg, configure_host_candidates
from voice.workers import MediaWorkers, RemoteLeg

log = logging.getLogger("chorus")


@dataclass
class Runtime:
    settings: Settings
    store: Store
    bus: Bus
    accounts: Accounts
    calls: CallController
    ringback: RingbackService
    hotline: HotlineService
    metrics: Metrics
    admin_key: str
    rooms: RoomService
    nodes: NodeBeat
    rpc: NodeRpc
    sip: SipService | None = None
    workers: MediaWorkers | None = None  # None: media in this process

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store.open(settings.effective_database_url)
        await store.migrate()
        bus = _bus(settings)
        await bus.start()
        accounts = Accounts(
            store,
            signing_key=await store.shared_secret("token_signing_key"),
            phone_salt=await store.shared_secret("phone_hash_salt"),
            token_ttl_s=settings.token_ttl_s,
        )
        metrics = Metrics()
        nodes = NodeBeat(bus, new_node_id(), info=_node_info(settings))
        configure_host_candidates(settings.effective_media_host)
        webrtc = WebRtcConfig(
            media_host=settings.effective_media_host, ice_servers=tuple(settings.ice_servers)
        )

        workers = await _media_workers(settings)

        async def new_leg(offer_sdp: str, label: str, *, near: Leg | None = None) -> Leg:
            if workers is None:
                return await WebRtcLeg.accept(offer_sdp, config=webrtc, label=label)
            link = workers.pick(near.link if isinstance(near, RemoteLeg) else None)
            return await RemoteLeg.open(link, "call_leg", offer_sdp, label)

        tones = ProgressTones(settings.region, settings.opus_bitrate)
        clips = ClipLibrary(store, bitrate=settings.opus_bitrate)
        catalog = Catalog(
            store,
            clips,
            max_seconds=settings.tone_max_seconds,
            longest_source_s=settings.tone_longest_source_s,
            personal_quota=settings.personal_tone_quota,
        )
        ringback = RingbackService(
            store=store,
            bus=bus,
            clips=clips,
            catalog=catalog,
            box=ToneBox(store, catalog),
            fallback=lambda: tones.ringback,
        )
        speaker = Speaker(store, clips, EspeakEngine())
        hotline = HotlineService(
            store=store,
            bus=bus,
            speaker=speaker,
            tones=ringback,
            agents=AgentDesk(store, bus),
            bitrate=settings.opus_bitrate,
            inband_dtmf=settings.hotline_inband_dtmf,
        )
        calls = CallController(
            store=store,
            bus=bus,
            legs=new_leg,
            tones=tones,
            metrics=metrics,
            no_answer_s=settings.no_answer_timeout_s,
            ringback=ringback,
            dtmf=ringback,
            desk=hotline,
            node=nodes.node_id,
        )
        hotline.attach(calls)
        if settings.sample_hotlines:
            await install_samples(hotline)
        if settings.redis_url is None:
            # Single node only: with several nodes, what is "left over" may be another
            # node's live call or agent.
            await hotline.agents.recover()
            stale = await calls.recover()
            if stale:
                log.warning("closed %d call records left open by an earlier run", stale)
        rooms = _rooms(settings, bus, nodes.node_id, workers)
        metrics.observe(rooms.media.readings)
        registrar = Registrar(store, bus, await store.shared_secret("sip_nonce_key"))
        sip = await _sip(settings, calls, RoomDoor(rooms, speaker, nodes), registrar)
        calls.dialer = sip  # app users call sip: addresses when SIP is on
        nodes.sweepers += [calls.sweep, rooms.sweep]
        nodes.resyncers += [calls.resync, rooms.resync]
        # Requests about a call carried by another node are run there (its legs, timers, lock).
        rpc = NodeRpc(bus, nodes.node_id, alive=nodes.alive)
        calls.serve_nodes(rpc)
        # A room's legs, mixer and recorder live on the node mixing it: requests that need
        # them are run there. Hotline callers wait on their call's node: an agent freed on
        # another node has those nodes offer them.
        rooms.serve_nodes(rpc)
        hotline.agents.serve_nodes(rpc)
        await rpc.start()
        await nodes.start()
        return cls(
            settings,
            store,
            bus,
            accounts,
            calls,
            ringback,
            hotline,
            metrics,
            _admin_key(settings),
            rooms=rooms,
            nodes=nodes,
            rpc=rpc,
            sip=sip,
            workers=workers,
        )

    async def stop(self) -> None:
        await self.rooms.stop()
        # Take no more requests about our calls (other nodes' askers get 503) before ending them.
        await self.rpc.close()
        await self.calls.shutdown()
        if self.sip is not None:
            await self.sip.stop()  # after the calls ended: their BYEs go out first
        await self.nodes.close()  # nothing of ours is left to sweep
        await self.hotline.shutdown()
        self.hotline.agents.shutdown()
        if self.workers is not None:
            await self.workers.close()  # after every leg and room of theirs was closed
        await self.bus.close()
        await self.store.close()


DOOR_PROMPTS = {
    "pin": "Welcome. Please enter the meeting PIN, then press the pound key.",
    "bad_pin": "That PIN is not correct. Please enter it again, then press pound.",
    "refused": "Sorry, you cannot join this meeting now. Goodbye.",
}


class RoomDoor:
    """Rooms as SIP callers reach them (voice.ports.RoomDoor): the rooms service, and the
    door's prompts spoken once by the speech engine (then cached as clips)."""

    def __init__(self, rooms: RoomService, speaker: Speaker, nodes: NodeBeat) -> None:
        self.rooms = rooms
        self.speaker = speaker
        self.nodes = nodes

    async def pin_needed(self, room_id: str) -> bool | None:
        return await self.rooms.pin_needed(room_id)

    async def mixed_at(self, room_id: str) -> str | None:
        node = await self.rooms.mixing_node(room_id)
        if node is None:
            return None
        info = await self.nodes.info_of(node)
        return info.get("sip") if info else None

    async def join_sip(
        self, room_id: str, leg: Any, *, caller: str, pin: str | None, display: str
    ) -> Any:
        return await self.rooms.join_sip(room_id, leg, caller=caller, pin=pin, display=display)

    async def prompt(self, name: str) -> OpusClip:
        return await self.speaker.say(DOOR_PROMPTS[name], "en")


async def _sip(
    settings: Settings, calls: CallController, rooms: RoomDoor, registrar: Registrar
) -> SipService | None:
    """SIP on `sip_port` (0: off), carried by a pool of pjsua2 worker processes."""
    if not settings.sip_port:
        return None
    media_host = settings.effective_media_host
    sip = SipService(
        SipConfig(
            host=settings.host,
            port=settings.sip_port,
            public_host=_sip_public_host(settings),
            media_host=media_host,
            rtp_port_min=settings.rtp_port_min,
            rtp_port_max=settings.rtp_port_max,
            max_workers=settings.sip_workers,
            spare_calls=settings.sip_spare_calls,
            bitrate=settings.opus_bitrate,
            rate_per_source=settings.sip_rate_per_source,
            guests=settings.sip_guests,
        ),
        calls,
        rooms,
        registrar,
    )
    try:
        await sip.start()
        for item in settings.sip_trunks:  # from the settings: stored like the API's
            trunk = Trunk(**{**item, "prefixes": tuple(item.get("prefixes") or ("",))})
            await calls.store.put_trunk(trunk.name, trunk.to_json())
            await sip.apply_trunk(trunk)
    except OSError as exc:  # the port is taken: the rest of the service still runs
        where = f"udp {settings.host}:{settings.sip_port}"
        log.error("SIP is off: cannot listen on %s (%s)", where, exc)
        await sip.stop()
        return None
    return sip


def _sip_public_host(settings: Settings) -> str:
    return settings.sip_public_host or settings.public_host or settings.effective_media_host


def _node_info(settings: Settings) -> dict[str, str]:
    """What other nodes learn of this one from its heartbeat: where its SIP port is, so a
    SIP caller for a room mixed here is sent here."""
    if not settings.sip_port:
        return {}
    return {"sip": f"{_sip_public_host(settings)}:{settings.sip_port}"}


def _bus(settings: Settings) -> Bus:
    if settings.redis_url:
        return RedisBus(settings.redis_url, prefix=settings.redis_key_prefix)
    return LocalBus()


async def _media_workers(settings: Settings) -> MediaWorkers | None:
    if settings.media_workers == 0:
        return None
    config = {
        "media_host": settings.effective_media_host,
        "ice_servers": list(settings.ice_servers),
        "rtp_port_min": settings.rtp_port_min,
        "rtp_port_max": settings.rtp_port_max,
        "engine": _engine_config(settings),
        "log_level": settings.log_level,
    }
    workers = MediaWorkers(settings.media_workers, entry="api.media_worker", config=config)
    try:
        await workers.start()
    except BaseException:
        await workers.close()
        raise
    return workers


def _engine_config(settings: Settings) -> dict[str, Any]:
    return {
        "bitrate": settings.mix_bitrate,
        "complexity": settings.mix_complexity,
        "dtx": settings.mix_dtx,
    }


def _rooms(settings: Settings, bus: Bus, node: str, workers: MediaWorkers | None) -> RoomService:
    """Audio rooms, mixed in the media workers (or here, without them). Their WebRTC legs
    ask browsers for Opus DTX (silence costs nothing)."""
    media_host = settings.effective_media_host
    recordings = RecordingStore(settings.data_dir / "recordings")
    media: LocalMedia | WorkerMedia
    if workers is not None:
        media = WorkerMedia(workers, recordings=recordings, rtp_host=media_host)
    else:
        webrtc = WebRtcConfig(
            media_host=media_host, ice_servers=tuple(settings.ice_servers), opus_dtx=True
        )

        async def new_leg(offer_sdp: str, label: str) -> WebRtcLeg:
            return await WebRtcLeg.accept(offer_sdp, config=webrtc, label=label)

        media = LocalMedia(
            webrtc=new_leg,
            rtp=RtpPorts(media_host, settings.rtp_port_min, settings.rtp_port_max),
            recordings=recordings,
            engine=EngineConfig(**_engine_config(settings)),
        )
    return RoomService(
        bus=bus,
        media=media,
        settings=RoomSettings(
            max_participants=settings.room_max_participants,
            speakers=settings.room_speakers or None,
            pin_attempts=settings.room_pin_attempts,
            pin_lockout_s=settings.room_pin_lockout_s,
            connect_timeout_s=settings.room_connect_timeout_s,
            node=node,
            advertised_host=settings.public_host,
        ),
    )


def _admin_key(settings: Settings) -> str:
    if settings.admin_key:
        return settings.admin_key
    path: Path = settings.data_dir / "admin.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(32) + "\n")
        log.info("generated an admin key in %s", path)
    return path.read_text().strip()
