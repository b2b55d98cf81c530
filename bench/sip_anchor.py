"""The anchor of bench/sip.py: one plain pjsua2 process answering SIP calls and doing the
per-call work of a Chorus SIP leg (receive and decode the caller's PCMU, send it a tone encoded
to PCMU), as the MEDIA-FACTS snippet does it: stock endpoint, calls on the main thread polling
`libHandleEvents(20)`, a ToneGenerator to each call, each call to the (null) playback device.

Usage (bench/sip.py starts it): python bench/sip_anchor.py PORT
Prints "ready" once it listens; SIGTERM ends it. At most 4 calls (the wheel's limit).
"""

from __future__ import annotations

import os
import signal
import sys

import pjsua2 as pj


class Call(pj.Call):
    def __init__(self, account: pj.Account, call_id: int, anchor: Anchor) -> None:
        super().__init__(account, call_id)
        self.anchor = anchor

    def onCallMediaState(self, prm: object) -> None:
        for index, media in enumerate(self.getInfo().media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                audio = self.getAudioMedia(index)
                self.anchor.tone.startTransmit(audio)
                audio.startTransmit(self.anchor.ep.audDevManager().getPlaybackDevMedia())

    def onCallState(self, prm: object) -> None:
        if self.getInfo().state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.anchor.ended.append(self)


class Account(pj.Account):
    def __init__(self, anchor: Anchor) -> None:
        super().__init__()
        self.anchor = anchor

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        call = Call(self, prm.callId, self.anchor)
        self.anchor.calls.append(call)
        op = pj.CallOpParam()
        op.statusCode = 200
        call.answer(op)


class Anchor:
    def __init__(self, port: int) -> None:
        self.calls: list[Call] = []
        self.ended: list[Call] = []
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = 4
        cfg.logConfig.level = cfg.logConfig.consoleLevel = 0
        cfg.medConfig.clockRate = cfg.medConfig.sndClockRate = 8000
        self.ep.libInit(cfg)
        self.ep.audDevManager().setNullDev()
        transport = pj.TransportConfig()
        transport.port = port
        transport.boundAddress = transport.publicAddress = "127.0.0.1"
        self.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
        self.ep.libStart()
        for codec in self.ep.codecEnum2():
            priority = 255 if codec.codecId.startswith("PCMU/8000") else 0
            self.ep.codecSetPriority(codec.codecId, priority)
        account = pj.AccountConfig()
        account.idUri = f"sip:anchor@127.0.0.1:{port}"
        media = account.mediaConfig.transportConfig
        media.boundAddress = media.publicAddress = "127.0.0.1"
        media.port = 47000
        self.account = Account(self)
        self.account.create(account)
        self.tone = pj.ToneGenerator()
        self.tone.createToneGenerator(8000, 1)
        desc = pj.ToneDesc()
        desc.freq1, desc.freq2, desc.on_msec, desc.off_msec = 440, 0, 10000, 0
        tones = pj.ToneDescVector()
        tones.append(desc)
        self.tone.play(tones, True)
        self.running = True

    def run(self) -> None:
        print("ready", flush=True)
        while self.running:
            self.ep.libHandleEvents(20)
            for call in self.ended:
                self.calls.remove(call)
            self.ended.clear()
        os._exit(0)  # no teardown: pjsua2 aborts on teardown-order mistakes (MEDIA-FACTS)


def main() -> None:
    anchor = Anchor(int(sys.argv[1]))

    def stop(*_: object) -> None:
        anchor.running = False

    signal.signal(signal.SIGTERM, stop)
    anchor.run()


if __name__ == "__main__":
    main()
