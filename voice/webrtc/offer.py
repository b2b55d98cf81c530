"""Screening a WebRTC offer and completing aiortc's answer: text work, no aiortc import.

aiortc answers every m-line it understands: a browser's video would be negotiated, received
and decoded on a thread, a data channel would start SCTP. A voice server wants exactly one
Opus stream. So the leg hands aiortc an offer reduced to the chosen audio m-line, keeping
only the lines aiortc reads (aiortc's parser reports a bad line with `assert`, which says
nothing to a client and vanishes under `python -O`), and afterwards puts the other m-lines
back into the answer as rejected, port 0, which is how JSEP refuses a section.

aiortc does not negotiate telephone-event (RFC 4733 keys), so when the audio m-line offers
it the answer gets it added here; the leg takes those packets off the receiver itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from voice.errors import BadSdp

MAX_OFFER_BYTES = 64 * 1024  # browser offers are 2-10 kB; this bounds parsing work

_LINE = re.compile(r"^[a-z]=")
_MLINE = re.compile(r"^m=([a-z]+) (\d+)(?:/\d+)? ([A-Z/]+) (\S.*)$")
_CONNECTION = re.compile(r"^c=IN IP[46] [^ ]+$")
_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([^/\s]+)/(\d+)(?:/(\d+))?$")
_FMTP = re.compile(r"^a=fmtp:(\d+) \S")
_RTCP_FB = re.compile(r"^a=rtcp-fb:(\d+|\*) \S")
_EXTMAP = re.compile(r"^a=extmap:\d+(?:/[a-z]+)? \S+$")
_SSRC = re.compile(r"^a=ssrc:\d+ [A-Za-z-]+:")
_SSRC_GROUP = re.compile(r"^a=ssrc-group:[A-Z]+( \d+)+$")
_FINGERPRINT = re.compile(
    r"^a=fingerprint:(sha-(?:1|224|256|384|512)) ([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})+)$"
)
_USABLE_HASHES = ("sha-256", "sha-384", "sha-512")
_SETUP_VALUES = ("actpass", "active", "passive")
_DIRECTIONS = ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive")
# Session-level attributes that matter for the audio m-line; the rest is dropped.
_SESSION_ATTRS = ("ice-ufrag", "ice-pwd", "ice-lite", "ice-options", "fingerprint", "setup")
# Media-level attributes aiortc uses for audio and can parse, once checked below.
_MEDIA_ATTRS = (
    "mid",
    "msid",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "fingerprint",
    "setup",
    "end-of-candidates",
    "rtcp-mux",
)
# telephone-event clock rates we answer, best first: Opus' own 48 kHz (what Chrome and Safari
# send with Opus), else RFC 4733's 8 kHz, the only one Firefox offers. A key is a key at any
# clock: the rate only scales the durations, which nobody here needs in seconds.
_DTMF_CLOCKS = (48000, 8000)
DTMF_EVENTS = "0-15"  # the sixteen keys; flash and the tones of RFC 4734 are not asked for


@dataclass(frozen=True)
class Section:
    """One m-line and the lines under it."""

    kind: str
    port: int
    profile: str
    fmt: tuple[str, ...]
    lines: tuple[str, ...]

    def attrs(self, name: str) -> list[str]:
        return _attr_values(self.lines, name)

    @property
    def mid(self) -> str | None:
        values = self.attrs("mid")
        return values[0] if values else None


@dataclass(frozen=True)
class ScreenedOffer:
    """An offer that passed the checks, and which of its m-lines carries our audio."""

    session: tuple[str, ...]
    sections: tuple[Section, ...]
    audio_index: int
    opus_payload_type: int
    dtmf_payload_type: int | None = None  # telephone-event, when the audio m-line offers it

    @property
    def audio(self) -> Section:
        return self.sections[self.audio_index]

    @property
    def dtmf_clock_rate(self) -> int | None:
        if self.dtmf_payload_type is None:
            return None
        return int(_rtpmaps(self.audio)[self.dtmf_payload_type].split("/")[1])

    def audio_only(self) -> str:
        """The offer as aiortc should see it: session basics plus the audio m-line."""
        return "\r\n".join([*_reduced_session(self), *_reduced_audio(self)]) + "\r\n"

    def complete_answer(self, audio_answer: str, opus_fmtp: str = "") -> str:
        """aiortc's one-section answer, with every other offered m-line rejected in place.

        aiortc answers Opus without a=fmtp; `opus_fmtp` (e.g. "useinbandfec=1") tells the
        peer what we want it to send, which, relayed, is what the other peer receives.
        An offered telephone-event is accepted next to Opus (aiortc leaves it out).
        """
        session, sections = _split(_lines(audio_answer))
        if len(sections) != 1:
            raise ValueError("expected an answer with exactly one m-line")
        bundled = self.audio.mid is not None and self.audio.mid in _bundle_mids(self.session)
        if not bundled:
            # Only an offered BUNDLE group may be answered (RFC 9143 section 7.3).
            session = [line for line in session if not line.startswith("a=group:BUNDLE")]
        # aiortc always writes UDP/TLS/RTP/SAVPF; an answer echoes the offered profile.
        kind, port, _, fmt = sections[0][0].split(" ", 3)
        events = self._events_answer(fmt.split())
        if events:
            fmt = f"{fmt} {self.dtmf_payload_type}"
        audio = [f"{kind} {port} {self.audio.profile} {fmt}"]
        for line in sections[0][1:]:
            audio.append(line)
            if line.startswith(f"a=rtpmap:{self.opus_payload_type} "):
                if opus_fmtp:
                    audio.append(f"a=fmtp:{self.opus_payload_type} {opus_fmtp}")
                audio += events
                events = []
        audio += events  # no Opus rtpmap to follow (aiortc always writes one)
        out = list(session)
        for index, section in enumerate(self.sections):
            out += audio if index == self.audio_index else _rejected(section)
        return "\r\n".join(out) + "\r\n"

    def _events_answer(self, answered: list[str]) -> list[str]:
        """The lines accepting the offered telephone-event, unless the answer has it already
        (an aiortc that learned it)."""
        pt = self.dtmf_payload_type
        if pt is None or str(pt) in answered:
            return []
        return [
            f"a=rtpmap:{pt} telephone-event/{self.dtmf_clock_rate}",
            f"a=fmtp:{pt} {DTMF_EVENTS}",
        ]


def screen_offer(sdp: object) -> ScreenedOffer:
    """Check that `sdp` is an offer we can answer with one Opus stream; BadSdp says why not."""
    if not isinstance(sdp, str):
        raise BadSdp(f"the offer must be SDP text, not {type(sdp).__name__}")
    if len(sdp) > MAX_OFFER_BYTES:
        raise BadSdp(f"the offer is larger than {MAX_OFFER_BYTES} bytes")
    lines = _lines(sdp)
    if not lines or lines[0] != "v=0":
        raise BadSdp("not an SDP offer: it must start with v=0")
    for number, line in enumerate(lines, 1):
        if not _LINE.match(line) or not line.isprintable():
            raise BadSdp(f"SDP line {number} is not of the form <letter>=<value>")
    session_lines, section_lines = _split(lines)
    sections = tuple(_section(s) for s in section_lines)
    index, opus = _choose_audio(sections)
    dtmf = _choose_dtmf(sections[index])
    offer = ScreenedOffer(tuple(session_lines), sections, index, opus, dtmf)
    _check_transport(offer)
    return offer


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def _split(lines: list[str]) -> tuple[list[str], list[list[str]]]:
    session: list[str] = []
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            session.append(line)
    return session, sections


def _section(lines: list[str]) -> Section:
    match = _MLINE.match(lines[0])
    if not match:
        raise BadSdp(f"malformed m-line: {lines[0][:80]!r}")
    kind, port, profile, fmt = match.groups()
    return Section(kind, int(port), profile, tuple(fmt.split()), tuple(lines))


def _attr_values(lines: tuple[str, ...] | list[str], name: str) -> list[str]:
    prefix, flag = f"a={name}:", f"a={name}"
    return [
        line[len(prefix) :] if line.startswith(prefix) else ""
        for line in lines
        if line.startswith(prefix) or line == flag
    ]


def _rtpmaps(section: Section) -> dict[int, str]:
    """Payload type -> encoding name, for the well-formed rtpmap lines."""
    found = {}
    for line in section.lines:
        match = _RTPMAP.match(line)
        if match:
            found[int(match.group(1))] = f"{match.group(2)}/{match.group(3)}"
    return found


def _choose_audio(sections: tuple[Section, ...]) -> tuple[int, int]:
    audio = [(i, s) for i, s in enumerate(sections) if s.kind == "audio"]
    if not audio:
        raise BadSdp("the offer has no audio m-line")
    offered: list[str] = []
    for index, section in audio:
        if section.port == 0 and not section.attrs("bundle-only"):
            continue  # rejected, unless only waiting to share the BUNDLE transport
        maps = _rtpmaps(section)
        for fmt in section.fmt:
            if fmt.isdigit() and maps.get(int(fmt), "").lower() == "opus/48000":
                return index, int(fmt)
        offered += [name.split("/")[0] for name in maps.values()]
    if not offered and all(s.port == 0 for _, s in audio):
        raise BadSdp("the offer's audio m-line is disabled (port 0)")
    names = ", ".join(dict.fromkeys(offered)) or "no named codecs"
    raise BadSdp(f"the audio m-line offers no Opus (it offers {names})")


def _choose_dtmf(audio: Section) -> int | None:
    """The payload type of the offered telephone-event we answer, if any (see _DTMF_CLOCKS)."""
    maps = _rtpmaps(audio)
    offered = {}
    for fmt in audio.fmt:
        name = maps.get(int(fmt), "") if fmt.isdigit() else ""
        if name.lower().startswith("telephone-event/"):
            offered.setdefault(int(name.split("/")[1]), int(fmt))
    return next((offered[clock] for clock in _DTMF_CLOCKS if clock in offered), None)


def _effective(offer: ScreenedOffer, name: str) -> list[str]:
    """Media-level values of an attribute, else the session-level ones."""
    return offer.audio.attrs(name) or _attr_values(offer.session, name)


def _check_transport(offer: ScreenedOffer) -> None:
    audio = offer.audio
    if not audio.profile.endswith(("RTP/SAVPF", "RTP/SAVP")):
        raise BadSdp(
            f"the audio m-line uses {audio.profile}; WebRTC needs DTLS-SRTP (UDP/TLS/RTP/SAVPF)"
        )
    for fmt in audio.fmt:
        if not fmt.isdigit() or int(fmt) > 127:
            raise BadSdp(f"the audio m-line lists an invalid payload type {fmt[:10]!r}")
    if not (_effective(offer, "ice-ufrag") and _effective(offer, "ice-pwd")):
        raise BadSdp("the offer has no ICE credentials (a=ice-ufrag and a=ice-pwd)")
    fingerprints = [f"a=fingerprint:{v}" for v in _effective(offer, "fingerprint")]
    if not fingerprints:
        raise BadSdp("the offer has no DTLS fingerprint (a=fingerprint); SDES is not supported")
    parsed = [_FINGERPRINT.match(line) for line in fingerprints]
    if not all(parsed):
        raise BadSdp("the offer has a malformed a=fingerprint line")
    if not any(m.group(1) in _USABLE_HASHES for m in parsed if m):
        raise BadSdp("the offer's DTLS fingerprint uses no hash we verify (sha-256/384/512)")
    setup = _effective(offer, "setup")
    if setup and setup[0] not in _SETUP_VALUES:
        raise BadSdp(f"the offer has a=setup:{setup[0][:20]}, expected actpass/active/passive")
    if not audio.attrs("rtcp-mux"):
        raise BadSdp("the audio m-line does not multiplex RTCP (a=rtcp-mux), WebRTC requires it")
    for line in [*offer.session, *audio.lines]:
        if line.startswith("c=") and not _CONNECTION.match(line):
            raise BadSdp(f"malformed connection line: {line[:60]!r}")


def _bundle_mids(session: tuple[str, ...] | list[str]) -> list[str]:
    for value in _attr_values(session, "group"):
        bits = value.split()
        if bits and bits[0] == "BUNDLE":
            return bits[1:]
    return []


def _reduced_session(offer: ScreenedOffer) -> list[str]:
    out = [line for line in offer.session if _keep_session_line(line)]
    mid = offer.audio.mid
    if mid is not None and mid in _bundle_mids(offer.session):
        out.append(f"a=group:BUNDLE {mid}")
    return out


def _keep_session_line(line: str) -> bool:
    if line[0] in "vost" or line.startswith("c="):
        return True
    if not line.startswith("a=") or _attr_name(line) not in _SESSION_ATTRS:
        return False
    if line.startswith("a=fingerprint:"):
        return bool(_FINGERPRINT.match(line))
    if line.startswith("a=setup:"):
        return line[len("a=setup:") :] in _SETUP_VALUES
    return True


def _attr_name(line: str) -> str:
    return line[2:].split(":", 1)[0]


def _reduced_audio(offer: ScreenedOffer) -> list[str]:
    audio = offer.audio
    mapped = set(_rtpmaps(audio))
    out = [audio.lines[0]]
    for line in audio.lines[1:]:
        name = _attr_name(line) if line.startswith("a=") else ""
        if line.startswith("c=") or line in _DIRECTIONS:
            keep = True
        elif name in _MEDIA_ATTRS:
            keep = name != "fingerprint" or bool(_FINGERPRINT.match(line))
        elif name == "rtpmap":
            keep = bool(_RTPMAP.match(line))
        elif name == "fmtp":
            # aiortc fails on a fmtp for a payload type that has no rtpmap.
            match = _FMTP.match(line)
            keep = bool(match) and int(match.group(1)) in mapped
        elif name == "rtcp-fb":
            keep = bool(_RTCP_FB.match(line))
        elif name == "candidate":
            keep = _usable_candidate(line)
        else:
            keep = (
                (name == "extmap" and bool(_EXTMAP.match(line)))
                or (name == "ssrc" and bool(_SSRC.match(line)))
                or (name == "ssrc-group" and bool(_SSRC_GROUP.match(line)))
            )
        if keep:
            out.append(line)
    if not _effective(offer, "setup"):
        # RFC 5763 makes a=setup mandatory; old offers (Firefox 2013) omit it. Like the
        # browsers, read that as actpass and take the DTLS client role ourselves.
        out.append("a=setup:actpass")
    return out


def _usable_candidate(line: str) -> bool:
    """An RTP (component 1) candidate with a literal address that aiortc can parse.

    mDNS (.local) candidates are dropped: resolving them from a server means multicast
    queries on the server's own LAN, and the browser's checks reach us anyway, which
    gives aioice the address as a peer-reflexive candidate.
    """
    bits = line[len("a=candidate:") :].split()
    return (
        len(bits) >= 8
        and bits[1] == "1"
        and bits[3].isdigit()
        and bits[5].isdigit()
        and bits[6] == "typ"
        and bits[2].lower() in ("udp", "tcp")
        and not bits[4].endswith(".local")
    )


def _rejected(section: Section) -> list[str]:
    """An m-line we refuse: port 0, as JSEP (RFC 9429 section 5.3.1) answers it."""
    out = [
        f"m={section.kind} 0 {section.profile} {section.fmt[0]}",
        "c=IN IP4 0.0.0.0",
    ]
    if section.kind in ("audio", "video"):
        out.append("a=inactive")
    if section.mid is not None:
        out.append(f"a=mid:{section.mid}")
    return out
