"""Offer screening and answer completion, on SDP text alone (no peer connection)."""

import pytest

from tests.corpus import shared_data
from voice.errors import BadSdp
from voice.webrtc.offer import screen_offer

SDP_DIR = shared_data("sdp")
CHROMIUM = (SDP_DIR / "webrtc-chromium120-offer-audio-video-bundle.sdp").read_text()


def edit(sdp: str, old: str, new: str) -> str:
    assert old in sdp
    return sdp.replace(old, new)


def test_chromium_offer_is_reduced_to_its_audio():
    offer = screen_offer(CHROMIUM)
    assert offer.audio_index == 0
    assert offer.opus_payload_type == 111
    reduced = offer.audio_only()
    assert reduced.count("m=") == 1
    assert "a=group:BUNDLE 0\r\n" in reduced
    assert "m=video" not in reduced
    assert "a=rtpmap:111 opus/48000/2" in reduced


def test_answer_rejects_the_other_m_lines_in_place():
    offer = screen_offer(CHROMIUM)
    fake_answer = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
        "m=audio 5000 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 127.0.0.1\r\na=mid:0\r\n"
    )
    answer = offer.complete_answer(fake_answer)
    mlines = [line for line in answer.splitlines() if line.startswith("m=")]
    # 110: the offered telephone-event, which aiortc leaves out and the answer takes
    assert mlines == ["m=audio 5000 UDP/TLS/RTP/SAVPF 111 110", "m=video 0 UDP/TLS/RTP/SAVPF 96"]
    assert "a=mid:1" in answer
    assert "a=group:BUNDLE 0\r\n" in answer


@pytest.mark.parametrize(
    ("sdp", "message"),
    [
        (None, "must be SDP text"),
        (b"v=0", "must be SDP text"),
        ("", "must start with v=0"),
        ("hello world", "must start with v=0"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n", "no audio m-line"),
        ("v=0\r\nthis is not sdp\r\n", "line 2"),
        ("v=0\r\nm=audio\r\n", "malformed m-line"),
        ("v=0\r\n" + "a=x\r\n" * 20000, "larger than"),
        (edit(CHROMIUM, "m=audio 9 ", "m=audio 0 "), "disabled"),
        (edit(CHROMIUM, "a=rtpmap:111 opus/48000/2", "a=rtpmap:111 foo/48000/2"), "no Opus"),
        (CHROMIUM.replace("a=ice-pwd:DTdCVj00s9nGkNgWra0P30A2\n", ""), "ICE credentials"),
        (CHROMIUM.replace("a=rtcp-mux\n", ""), "rtcp-mux"),
        (CHROMIUM.replace("a=setup:actpass", "a=setup:holdconn"), "a=setup:holdconn"),
        (CHROMIUM.replace("a=fingerprint:sha-256 A4", "a=fingerprint:sha-256 ZZ"), "malformed"),
        (edit(CHROMIUM, "UDP/TLS/RTP/SAVPF 111", "RTP/AVP 111"), "DTLS-SRTP"),
        (edit(CHROMIUM, "c=IN IP4 0.0.0.0\n", "c=IN IP7 X\n"), "connection line"),
    ],
)
def test_bad_offers_say_why(sdp, message):
    with pytest.raises(BadSdp) as info:
        screen_offer(sdp)
    assert message in str(info.value)
    assert info.value.status == 400


def test_fingerprint_only_in_another_m_line_is_not_enough():
    audio_only = CHROMIUM.split("m=video")[0]
    without = "\n".join(
        line for line in audio_only.splitlines() if not line.startswith("a=fingerprint")
    )
    with pytest.raises(BadSdp, match="DTLS fingerprint"):
        screen_offer(without)


def test_lines_aiortc_would_choke_on_are_dropped():
    sdp = edit(
        CHROMIUM,
        "a=rtpmap:111 opus/48000/2",
        "a=rtpmap:111 opus/48000/2\na=fmtp:99 orphan=1\na=candidate:1 1 udp 1 x.local 9 typ host\n"
        "a=candidate:broken\na=ssrc:12\na=extmap:7 urn:a urn:b\na=rtcp:9 IN IP7 X",
    )
    reduced = screen_offer(sdp).audio_only()
    for gone in ("orphan", "x.local", "candidate:broken", "a=ssrc:12\r", "urn:a", "IP7"):
        assert gone not in reduced


def test_missing_setup_is_read_as_actpass():
    sdp = CHROMIUM.replace("a=setup:actpass\n", "")
    assert "a=setup:actpass" in screen_offer(sdp).audio_only()


def test_answer_asks_for_in_band_fec():
    offer = screen_offer(CHROMIUM)
    fake_answer = (
        "v=0\r\ns=-\r\nm=audio 5000 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
        "a=rtpmap:111 opus/48000/2\r\na=setup:active\r\n"
    )
    answer = offer.complete_answer(fake_answer, "minptime=10;useinbandfec=1")
    assert "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n" in answer


def test_a_bundle_only_audio_m_line_is_not_disabled():
    sdp = edit(CHROMIUM, "m=audio 9 ", "m=audio 0 ").replace(
        "a=mid:0\n", "a=mid:0\na=bundle-only\n"
    )
    assert screen_offer(sdp).audio_index == 0


# -- telephone-event (RFC 4733 keys), which aiortc leaves out of its answers ----------------

FAKE_AUDIO_ANSWER = (
    "v=0\r\ns=-\r\nm=audio 5000 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
    "a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 nack\r\na=setup:active\r\n"
)


def audio_lines(answer: str) -> list[str]:
    """The answer's audio m-line and the lines under it."""
    return ("m=audio" + answer.split("m=audio", 1)[1]).split("m=video")[0].split("\r\n")


def test_telephone_event_at_opus_clock_is_answered_next_to_opus():
    offer = screen_offer(CHROMIUM)  # offers telephone-event/48000 as 110 and /8000 as 126
    assert (offer.dtmf_payload_type, offer.dtmf_clock_rate) == (110, 48000)
    answer = offer.complete_answer(FAKE_AUDIO_ANSWER, "useinbandfec=1")
    lines = audio_lines(answer)
    assert lines[0] == "m=audio 5000 UDP/TLS/RTP/SAVPF 111 110"
    at = lines.index("a=rtpmap:111 opus/48000/2")
    assert lines[at : at + 4] == [
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 useinbandfec=1",
        "a=rtpmap:110 telephone-event/48000",
        "a=fmtp:110 0-15",
    ]
    assert "126" not in answer and "telephone-event/8000" not in answer


@pytest.mark.parametrize(
    ("name", "payload_type", "clock"),
    [
        ("webrtc-chromium120-offer-audio-video-bundle.sdp", 110, 48000),
        ("webrtc-safari-offer-audio-video-data-bundle.sdp", 110, 48000),
        ("webrtc-chrome-offer-audio-bundle-candidates.sdp", 110, 48000),  # also 32k, 16k
        ("webrtc-firefox121-offer-audio-video-bundle.sdp", 101, 8000),  # Firefox: 8000/1 only
        ("webrtc-firefox58-offer-audio-bundle-candidates.sdp", 101, 8000),
    ],
)
def test_browsers_telephone_events(name, payload_type, clock):
    offer = screen_offer((SDP_DIR / name).read_text())
    assert (offer.dtmf_payload_type, offer.dtmf_clock_rate) == (payload_type, clock)
    opus = offer.opus_payload_type
    fake = FAKE_AUDIO_ANSWER.replace("111", str(opus))
    answer = offer.complete_answer(fake)
    assert f"a=rtpmap:{payload_type} telephone-event/{clock}\r\n" in answer
    assert f"a=fmtp:{payload_type} 0-15\r\n" in answer
    mline = audio_lines(answer)[0]
    assert mline.endswith(f" {opus} {payload_type}")


def test_no_telephone_event_offered_none_answered():
    sdp = "\n".join(
        line
        for line in CHROMIUM.splitlines()
        if "telephone-event" not in line and not line.startswith(("a=fmtp:110", "a=fmtp:126"))
    ).replace("111 63 9 0 8 13 110 126", "111 63 9 0 8 13")
    offer = screen_offer(sdp)
    assert offer.dtmf_payload_type is None and offer.dtmf_clock_rate is None
    answer = offer.complete_answer(FAKE_AUDIO_ANSWER)
    assert "telephone-event" not in answer
    assert audio_lines(answer)[0] == "m=audio 5000 UDP/TLS/RTP/SAVPF 111"


def test_telephone_event_only_at_an_odd_clock_or_not_listed_is_not_taken():
    odd = CHROMIUM.replace("telephone-event/48000", "telephone-event/16000").replace(
        "telephone-event/8000", "telephone-event/32000"
    )
    assert screen_offer(odd).dtmf_payload_type is None
    unlisted = edit(CHROMIUM, "13 110 126", "13 126")  # rtpmap:110 without its format
    assert screen_offer(unlisted).dtmf_payload_type == 126


def test_an_answer_that_has_telephone_event_already_is_left_alone():
    offer = screen_offer(CHROMIUM)
    fake = FAKE_AUDIO_ANSWER.replace("SAVPF 111", "SAVPF 111 110").replace(
        "a=rtcp-fb", "a=rtpmap:110 telephone-event/48000\r\na=rtcp-fb"
    )
    answer = offer.complete_answer(fake)
    assert answer.count("a=rtpmap:110 ") == 1
    assert audio_lines(answer)[0] == "m=audio 5000 UDP/TLS/RTP/SAVPF 111 110"
