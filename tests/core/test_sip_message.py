"""The SIP parser against the RFC 4475 torture messages and hand-written cases."""

from __future__ import annotations

import csv
import random

import pytest

from tests.corpus import shared_data
from voice.sip.message import (
    SipError,
    application_refusal,
    best_effort_response,
    parse,
    parse_name_addr,
    parse_uri,
    parse_via,
    response_to,
)

TORTURE = shared_data("sip-torture")


def _index() -> list[dict[str, str]]:
    with open(TORTURE / "index.tsv", newline="") as file:
        return list(csv.DictReader(file, delimiter="\t"))


ROWS = _index()
BY_CATEGORY = {
    category: [row["file"] for row in ROWS if row["category"] == category]
    for category in {row["category"] for row in ROWS}
}


def needs_corpus(test):  # type: ignore[no-untyped-def]
    return test  # the corpus is required: tests/corpus.py fails loudly without it


def test_the_whole_corpus_is_there():
    assert len(ROWS) == 49


# What a user agent answers to each application-semantics message (RFC 4475 section 3.3);
# 0 means "drop it" (a response to a broadcast address); None means "handle it normally".
APPLICATION = {
    "3.3.1-insuf.sip": 400,
    "3.3.2-unkscm.sip": 416,
    "3.3.3-novelsc.sip": 416,
    "3.3.4-unksm2.sip": 416,
    "3.3.5-bext01.sip": 420,
    "3.3.6-invut.sip": 415,
    "3.3.7-regaut01.sip": 401,
    "3.3.8-multi01.sip": 400,
    "3.3.9-mcl01.sip": 400,
    "3.3.10-bcast.sip": 0,
    "3.3.11-zeromf.sip": 483,
    "3.3.12-cparam01.sip": None,
    "3.3.13-cparam02.sip": None,
    "3.3.14-regescrt.sip": None,
    "3.3.15-sdp01.sip": 406,
}


def _read(name: str) -> bytes:
    return (TORTURE / name).read_bytes()


@needs_corpus
def test_the_corpus_is_complete() -> None:
    assert len(ROWS) == 49
    assert set(APPLICATION) == set(BY_CATEGORY["application-semantics"])


@needs_corpus
@pytest.mark.parametrize("name", BY_CATEGORY.get("valid", []))
def test_valid_messages_parse(name: str) -> None:
    message = parse(_read(name))
    assert message.call_id
    assert message.vias
    assert message.cseq.number >= 0
    if message.is_request:
        assert message.method == message.cseq.method
    # the wire form parses again to the same message
    again = parse(message.to_bytes())
    assert (
        again.headers[: len(message.headers)]
        == [h for h in message.headers if h[0] != "Content-Length"]
        or again.call_id == message.call_id
    )
    assert again.body == message.body


@needs_corpus
@pytest.mark.parametrize("name", BY_CATEGORY.get("invalid", []))
def test_invalid_messages_are_refused(name: str) -> None:
    with pytest.raises(SipError) as error:
        parse(_read(name))
    expected = 505 if name == "3.1.2.16-badvers.sip" else 400
    assert error.value.status == expected


@needs_corpus
@pytest.mark.parametrize("name", sorted(APPLICATION))
def test_application_semantics(name: str) -> None:
    refusal = application_refusal(parse(_read(name)))
    expected = APPLICATION[name]
    if expected is None:
        assert refusal is None
    else:
        assert refusal is not None and refusal.status == expected, refusal


@needs_corpus
@pytest.mark.parametrize(
    "name",
    BY_CATEGORY.get("transaction-semantics", []) + BY_CATEGORY.get("backward-compat", []),
)
def test_odd_but_acceptable_messages(name: str) -> None:
    message = parse(_read(name))
    assert application_refusal(message) is None


@needs_corpus
def test_details_of_tricky_messages() -> None:
    ws = parse(_read("3.1.1.1-wsinv.sip"))
    assert ws.to.tag == "1918181833n"
    assert ws.from_.tag == "98asjd8"
    assert ws.from_.display == '"J Rosenberg \\\\\\""'
    assert ws.max_forwards == 68
    assert ws.cseq.number == 9 and ws.cseq.method == "INVITE"
    assert [v.transport for v in ws.vias] == ["UDP", "TCP", "UDP"]
    assert ws.vias[2].branch == "z9hG4bK30239"
    assert len(ws.body) == 150
    contact = ws.contacts[0]
    assert contact.param("q") == "0.33" and contact.param("secondparam") == ""
    esc = parse(_read("3.1.1.3-esc01.sip"))
    assert esc.uri is not None and esc.uri.user_unescaped == "sips:user@example.com"
    assert esc.to.uri.user_unescaped == "user"
    assert esc.from_.uri.user_unescaped == "I have spaces"
    null = parse(_read("3.1.1.4-escnull.sip"))
    assert null.to.uri.user_unescaped == "null-\x00-null"
    assert len(null.contacts) == 2
    semi = parse(_read("3.1.1.9-semiuri.sip"))
    assert semi.uri is not None and semi.uri.user == "user;par=u%40example.net"
    assert semi.uri.host == "example.com"
    dbl = parse(_read("3.1.1.8-dblreq.sip"))
    assert dbl.method == "REGISTER" and dbl.body == b""
    mpart = parse(_read("3.1.1.11-mpart01.sip"))
    assert len(mpart.body) == 553 and b"\n" in mpart.body
    assert parse(_read("3.1.1.13-noreason.sip")).reason == ""
    assert parse(_read("3.1.1.12-unreason.sip")).status == 200
    esc2 = parse(_read("3.1.1.5-esc02.sip"))
    assert esc2.method == "RE%47IST%45R" and len(esc2.contacts) == 2  # C%6Fntact is unknown
    param = parse(_read("3.3.12-cparam01.sip")).contacts[0]
    assert not param.uri.has_param("unknownparam") and param.param("unknownparam") == ""
    bracketed = parse(_read("3.3.13-cparam02.sip")).contacts[0]
    assert bracketed.uri.has_param("unknownparam")


@needs_corpus
def test_every_truncation_and_mutation_fails_cleanly() -> None:
    """Cheap fuzzing: prefixes, LF-only line ends and flipped bytes either parse or raise
    SipError, never anything else."""
    rng = random.Random(4475)
    for row in ROWS:
        data = _read(row["file"])
        variants = [data[:cut] for cut in range(0, len(data), 7)]
        variants.append(data.replace(b"\r\n", b"\n"))
        for _ in range(40):
            flipped = bytearray(data)
            flipped[rng.randrange(len(data))] = rng.randrange(256)
            variants.append(bytes(flipped))
        for variant in variants:
            try:
                message = parse(variant)
            except SipError as exc:
                assert 400 <= exc.status < 600
                best_effort_response(variant, exc)
            else:
                application_refusal(message)
                message.to_bytes()


def test_uris() -> None:
    uri = parse_uri("sip:alice:pw@[2001:db8::1]:5070;transport=tcp;lr?subject=hi")
    assert (uri.user, uri.password, uri.host, uri.port) == ("alice", "pw", "[2001:db8::1]", 5070)
    assert uri.param("transport") == "tcp" and uri.has_param("lr")
    assert uri.headers == "subject=hi"
    assert str(uri) == "sip:alice:pw@[2001:db8::1]:5070;transport=tcp;lr?subject=hi"
    assert parse_uri("tel:+8613800138000").opaque == "+8613800138000"
    for bad in ("sip:", "sip:al ice@x", "sip:a@host:99999", "sip:a@300.1.1.1", "<sip:a@b>", "x"):
        with pytest.raises(SipError):
            parse_uri(bad)
    with pytest.raises(SipError):
        parse_uri("sip:a@b?x=y", allow_headers=False)


def test_name_addrs_and_vias() -> None:
    addr = parse_name_addr('"Alice A." <sip:alice@example.com>;tag=9')
    assert addr.display == '"Alice A."' and addr.tag == "9" and addr.uri.user == "alice"
    assert parse_name_addr("Bob <sip:bob@h>").display == "Bob"
    for bad in ('"open <sip:a@b>', "Bell, A <sip:a@b>", "< sip:a@b>", "<sip:a@b>;;", "sip:a@b?x"):
        with pytest.raises(SipError):
            parse_name_addr(bad)
    via = parse_via("SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK1;rport")
    assert via.rport == "" and via.branch == "z9hG4bK1" and via.port == 5062
    assert str(via) == "SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK1;rport"


INVITE = (
    b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-1;rport\r\n"
    b"v: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK-0\r\n"
    b"Max-Forwards: 70\r\n"
    b"f: <sip:alice@127.0.0.1:5062>;tag=a1\r\n"
    b"t: <sip:bob@127.0.0.1>\r\n"
    b"i: abc@127.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"m: <sip:alice@127.0.0.1:5062>\r\n"
    b"c: application/sdp\r\n"
    b"l: 4\r\n\r\n"
    b"v=0\n"
)


def test_headers_can_be_edited_and_serialized() -> None:
    message = parse(INVITE)
    assert message.get("Content-Type") == "application/sdp"
    assert len(message.vias) == 2
    message.prepend("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-front")
    assert message.top_via.branch == "z9hG4bK-front"
    assert message.pop_first("Via") == "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-front"
    message.set("Max-Forwards", "69")
    wire = message.to_bytes()
    again = parse(wire)
    assert again.max_forwards == 69 and again.body == b"v=0\n" and again.call_id == "abc@127.0.0.1"
    ok = response_to(again, 180, to_tag="xyz")
    ringing = parse(ok.to_bytes())
    assert ringing.status == 180 and ringing.reason == "Ringing"
    assert ringing.to.tag == "xyz" and len(ringing.vias) == 2


def test_folded_via_lists_pop_one_value_at_a_time() -> None:
    message = parse(
        INVITE.replace(
            b"v: SIP/2.0/UDP 10.0.0.9", b"Via: SIP/2.0/UDP 10.0.0.8, SIP/2.0/UDP 10.0.0.9"
        )
    )
    assert [v.host for v in message.vias] == ["127.0.0.1", "10.0.0.8", "10.0.0.9"]
    message.pop_first("Via")
    message.pop_first("Via")
    assert [v.host for v in message.vias] == ["10.0.0.9"]


def test_limits_and_best_effort_answers() -> None:
    with pytest.raises(SipError) as error:
        parse(INVITE + b"x" * 70000)
    assert error.value.status == 413
    broken = INVITE.replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE")
    with pytest.raises(SipError) as error:
        parse(broken)
    answer = best_effort_response(broken, error.value)
    assert answer is not None and answer.startswith(b"SIP/2.0 400 ")
    assert parse(answer).call_id == "abc@127.0.0.1"
    assert best_effort_response(b"garbage", SipError(400, "x")) is None
    with pytest.raises(SipError):
        parse(INVITE.replace(b"l: 4\r\n", b""), stream=True)


def _info(content_type: str, body: str) -> bytes:
    return (
        "INFO sip:room-1@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n"
        "From: <sip:a@example.com>;tag=1\r\nTo: <sip:room-1@example.com>;tag=2\r\n"
        "Call-ID: info-1\r\nCSeq: 3 INFO\r\nMax-Forwards: 70\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def test_info_dtmf_reads_dtmf_relay_and_bare_keys_and_refuses_nothing_else():
    from voice.sip.message import application_refusal, info_dtmf

    relay = parse(_info("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"))
    assert info_dtmf(relay) == "5" and application_refusal(relay) is None
    assert info_dtmf(parse(_info("application/dtmf-relay", "signal= #\r\n"))) == "#"
    assert info_dtmf(parse(_info("application/dtmf-relay", "Signal=11\r\n"))) == "#"
    assert info_dtmf(parse(_info("application/dtmf", "*"))) == "*"
    for junk in ("Signal=55\r\n", "Signal=\r\n", "Duration=160\r\n", "Signal=x\r\n"):
        assert info_dtmf(parse(_info("application/dtmf-relay", junk))) is None
    other = parse(_info("text/plain", "Signal=5"))
    assert info_dtmf(other) is None and application_refusal(other).status == 415
