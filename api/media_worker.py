"""A media worker process (`python -m api.media_worker --fd N --config JSON`, started by
`voice.workers.MediaWorkers`): the composition root of a worker, as `runtime` is of the API
process. It answers offers with WebRTC legs (for calls and for rooms) and mixes rooms."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from typing import Any

from api.logs import configure
from conference.engine import EngineConfig
from conference.hosted import RoomsHost
from voice.rtp import RtpPorts
from voice.webrtc import WebRtcConfig, WebRtcLeg, configure_host_candidates
from voice.workers import host as worker_host
from voice.workers.hosted import HostedLeg

log = logging.getLogger("chorus.worker")


def factories(config: dict[str, Any]) -> dict[str, worker_host.Factory]:
    ice = tuple(config["ice_servers"])
    for_calls = WebRtcConfig(media_host=config["media_host"], ice_servers=ice)
    # Room legs ask browsers for Opus DTX: silence costs nothing.
    for_rooms = WebRtcConfig(media_host=config["media_host"], ice_servers=ice, opus_dtx=True)

    def leg_factory(webrtc: WebRtcConfig) -> worker_host.Factory:
        async def make(host: worker_host.Host, obj_id: int, *, offer_sdp: str, label: str) -> Any:
            leg = await WebRtcLeg.accept(offer_sdp, config=webrtc, label=label)
            return HostedLeg(host, obj_id, leg), leg.answer_sdp

        return make

    async def rooms(host: worker_host.Host, obj_id: int) -> Any:
        ports = RtpPorts(config["media_host"], config["rtp_port_min"], config["rtp_port_max"])
        return RoomsHost(host, obj_id, EngineConfig(**config["engine"]), ports), None

    return {"call_leg": leg_factory(for_calls), "room_leg": leg_factory(for_rooms), "rooms": rooms}


def main() -> None:
    parser = argparse.ArgumentParser(description="A Chorus media worker (started by the server).")
    parser.add_argument("--fd", type=int, required=True, help="the socket to the API process")
    parser.add_argument("--config", required=True, help="the worker's settings, as JSON")
    args = parser.parse_args()
    worker_host.die_with_parent()
    config = json.loads(args.config)
    configure(config.get("log_level", "info"))
    signal.signal(
        signal.SIGINT, signal.SIG_IGN
    )  # Ctrl-C reaches the whole group: the server ends us
    configure_host_candidates(config["media_host"])
    asyncio.run(worker_host.serve(args.fd, factories(config)))


if __name__ == "__main__":
    main()
