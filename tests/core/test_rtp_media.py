"""Plain-RTP building blocks, pure: packet parsing (garbage included), RTCP reports, G.711,
8/48 kHz resampling, Ogg Opus pages."""

from __future__ import annotations

import os
import random
import struct
import warnings

import numpy as np
import pytest

from tests.audio import band_rms, dominant_frequency, sine
from voice.media import g711
from voice.media.ogg import OggOpusWriter, ogg_crc, read_opus_packets, read_pages
from voice.media.opus import OpusDecoderStream, OpusEncoderStream
from voice.media.resample import Downsampler, Upsampler
from voice.rtp import rtcp
from voice.rtp.packet import (
    MALFORMED,
    RTCP,
    SHORT,
    VERSION,
    RtpPacket,
    audio_level_extension,
    build_rtp,
    build_rtp_with_extension,
    parse_rtp,
)


def test_rtp_round_trip_and_header_fields():
    data = build_rtp(111, 65535, 2**32 - 1, 0xDEADBEEF, b"opus", marker=True)
    packet = parse_rtp(data)
    assert isinstance(packet, RtpPacket)
    assert (packet.payload_type, packet.marker, packet.seq, packet.timestamp) == (
        111,
        True,
        65535,
        2**32 - 1,
    )
    assert (packet.ssrc, packet.payload, packet.level) == (0xDEADBEEF, b"opus", None)


def test_csrcs_padding_and_the_audio_level_extension():
    with_level = build_rtp_with_extension(
        0, 1, 160, 7, b"\xff" * 160, audio_level_extension(3, -42)
    )
    assert parse_rtp(with_level, audio_level_id=3).level == -42
    assert parse_rtp(with_level, audio_level_id=5).level is None  # another id: ignored
    assert parse_rtp(with_level).payload == b"\xff" * 160
    csrc_padded = (
        struct.pack("!BBHII", 0xA2, 0, 1, 160, 7) + b"\0" * 8 + b"abc" + b"\0\0\x03"
    )  # CC=2, P=1: 3 bytes of padding
    assert parse_rtp(csrc_padded).payload == b"abc"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", SHORT),
        (b"\x80\x00\x00", SHORT),
        (b"\x40" + b"\0" * 20, VERSION),  # version 1
        (b"\x00" + b"\0" * 20, VERSION),
        (b"\x8f" + b"\0" * 20, MALFORMED),  # 15 CSRCs promised, 9 bytes after the header
        (b"\x90" + b"\0" * 12, MALFORMED),  # an extension header that is not there
        (struct.pack("!BBHII", 0x90, 0, 0, 0, 0) + struct.pack("!HH", 0xBEDE, 100), MALFORMED),
        (struct.pack("!BBHII", 0xA0, 0, 0, 0, 0) + b"\x01\x02\xff", MALFORMED),  # padding 255
        (struct.pack("!BBHII", 0x80, 200, 0, 0, 0), RTCP),  # an SR, muxed
    ],
)
def test_garbage_is_named_never_raised(data, reason):
    assert parse_rtp(data, audio_level_id=1) == reason


def test_random_garbage_never_raises():
    rng = random.Random(7)
    for _ in range(5000):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 40)))
        result = parse_rtp(data, audio_level_id=rng.randrange(1, 15))
        assert isinstance(result, str | RtpPacket)
        assert rtcp.parse_rtcp(data) is None or isinstance(rtcp.parse_rtcp(data), list)


def test_rtcp_sender_and_receiver_reports_round_trip():
    block = rtcp.ReportBlock(0x1234, 25, -3, 70000, 12, lsr=0xABCD0000, dlsr=65536)
    info = rtcp.SenderInfo(rtcp.ntp_time(1_700_000_000.5), 96000, 50, 4000)
    compound = rtcp.sender_report(0x99, info, [block]) + rtcp.sdes_cname(0x99, "chorus-x")
    reports = rtcp.parse_rtcp(compound)
    assert reports is not None and len(reports) == 1
    (sr,) = reports
    assert (sr.kind, sr.ssrc, sr.blocks) == (rtcp.SR, 0x99, (block,))
    assert sr.sender == info and (info.ntp >> 32) == 1_700_000_000 + rtcp.NTP_EPOCH_OFFSET
    rr = rtcp.receiver_report(0x77, [block])
    assert rtcp.parse_rtcp(rr)[0].blocks == (block,)
    assert len(compound) % 4 == 0 and rtcp.parse_rtcp(compound[:-4]) is None


def test_g711_matches_the_reference_tables():
    samples = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # the reference (Python 3.11; it leaves the standard library in 3.13)
    for codec, encode, decode in (
        ("pcmu", audioop.lin2ulaw, audioop.ulaw2lin),
        ("pcma", audioop.lin2alaw, audioop.alaw2lin),
    ):
        assert g711.encode(codec, samples) == encode(samples.tobytes(), 2)
        codes = bytes(range(256))
        assert np.array_equal(
            g711.decode(codec, codes), np.frombuffer(decode(codes, 2), dtype=np.int16)
        )


def test_g711_round_trip_and_silence():
    tone = sine(1000, 0.02, 8000, level=0.5)
    for codec in g711.CODECS:
        back = g711.decode(codec, g711.encode(codec, tone)).astype(np.float64)
        error = np.sqrt(np.mean((back - tone) ** 2)) / np.sqrt(np.mean(tone.astype(float) ** 2))
        assert error < 0.03  # about -33 dB: G.711's SNR
        assert np.abs(g711.decode(codec, g711.silence(codec))).max() <= 8


def test_resampling_keeps_the_voice_band_and_drops_the_rest():
    down, up = Downsampler(), Upsampler()
    for freq, kept in ((300, True), (1000, True), (3000, True), (5000, False), (9000, False)):
        x = sine(freq, 0.5, 48000, level=0.5)
        y = np.concatenate([Downsampler().process(x[i : i + 960]) for i in range(0, len(x), 960)])
        level = band_rms(y[800:], 8000, min(freq, 3999), width_hz=40)
        assert (level > 8000) == kept, (freq, level)
    x8 = sine(1000, 0.5, 8000, level=0.5)
    y = np.concatenate([up.process(x8[i : i + 160]) for i in range(0, len(x8), 160)])
    assert len(y) == 6 * len(x8) and abs(dominant_frequency(y[4800:]) - 1000) < 5
    assert band_rms(y[4800:], 48000, 7000, width_hz=1000) < 50  # no images above 4 kHz
    assert down.process(np.zeros(960, np.int16)).shape == (160,)


def test_ogg_crc_and_pages():
    data = os.urandom(300)
    reference = 0
    for byte in data:  # the textbook bitwise CRC: polynomial 0x04C11DB7, MSB first
        reference ^= byte << 24
        for _ in range(8):
            reference = (reference << 1) ^ (0x04C11DB7 if reference & 0x80000000 else 0)
            reference &= 0xFFFFFFFF
    assert ogg_crc(data) == reference

    encoder = OpusEncoderStream(bitrate=32000)
    tone = sine(440, 1.2, 48000, level=0.3)
    writer = OggOpusWriter(serial=1234, pages_per_flush=20)
    out = writer.header()
    packets = [encoder.encode(tone[i : i + 960]) for i in range(0, len(tone), 960)]
    for packet in packets:
        out += writer.add(packet)
    out += writer.close()
    pages = list(read_pages(out))
    assert pages[0].flags == 0x02 and pages[-1].flags == 0x04
    assert [p.sequence for p in pages] == list(range(len(pages)))
    assert pages[-1].granule == len(packets) * 960 and writer.duration_s == pytest.approx(1.2)
    assert read_opus_packets(out) == packets
    decoder = OpusDecoderStream()
    pcm = np.concatenate([decoder.decode(p) for p in read_opus_packets(out)])
    assert abs(dominant_frequency(pcm[4800:]) - 440) < 3
    broken = bytearray(out)
    broken[60] ^= 1
    with pytest.raises(ValueError):
        list(read_pages(bytes(broken)))
