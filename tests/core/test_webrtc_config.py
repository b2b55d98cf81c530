"""WebRtcConfig: ICE server URLs, no default STUN, and the host-candidate override."""

import aioice.ice
import pytest

from voice.webrtc import WebRtcConfig, configure_host_candidates, parse_ice_server


def test_no_ice_servers_means_none_not_googles():
    assert WebRtcConfig().rtc_configuration().iceServers == []


def test_stun_and_turn_urls():
    stun = parse_ice_server("stun:stun.example.org:3478")
    assert stun.urls == "stun:stun.example.org:3478" and stun.username is None
    turn = parse_ice_server("turn:alice:s3:cret@turn.example.org:3478?transport=tcp")
    assert turn.urls == "turn:turn.example.org:3478?transport=tcp"
    assert (turn.username, turn.credential) == ("alice", "s3:cret")
    config = WebRtcConfig(ice_servers=("stun:a.example:3478", "turns:u:p@b.example:5349"))
    assert [s.urls for s in config.rtc_configuration().iceServers] == [
        "stun:a.example:3478",
        "turns:b.example:5349",
    ]


@pytest.mark.parametrize(
    "url",
    ["http://x", "turn:host:3478", "turn:alice@host:3478", "stun:u:p@host:1", "turn:u:p@", 5],
)
def test_bad_ice_urls_fail_without_echoing_secrets(url):
    with pytest.raises(ValueError) as info:
        parse_ice_server(url)
    assert "p@" not in str(info.value)


def test_config_checks_its_values_early():
    with pytest.raises(ValueError):
        WebRtcConfig(media_host="not-an-ip")
    with pytest.raises(ValueError):
        WebRtcConfig(ice_servers=("turn:nohost",))
    assert "useinbandfec=1" in WebRtcConfig().opus_fmtp
    assert "usedtx=1" in WebRtcConfig(opus_dtx=True).opus_fmtp


def test_host_candidates_are_exactly_the_media_host():
    try:
        configure_host_candidates("10.1.2.3")
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["10.1.2.3"]
        assert aioice.ice.get_host_addresses(use_ipv4=False, use_ipv6=True) == []
        patched = aioice.ice.get_host_addresses
        configure_host_candidates("10.1.2.3")
        assert aioice.ice.get_host_addresses is patched  # idempotent
        with pytest.raises(ValueError):
            configure_host_candidates("example.org")
    finally:
        configure_host_candidates("127.0.0.1")
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
