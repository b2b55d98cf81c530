"""SIP digest authentication (pure): RFC 2617's own example, our nonces, and bad input."""

from __future__ import annotations

import pytest

from voice.sip import digest

KEY = "nonce-key"
NOW = 1_800_000_000.0


def test_the_rfc_2617_example_response():
    credentials = digest.parse_credentials(
        'Digest username="Mufasa", realm="testrealm@host.com", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, '
        'nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    assert credentials is not None and credentials.qop == "auth"
    ha1 = digest.ha1("Mufasa", "Circle Of Life", "testrealm@host.com")
    assert digest.expected_response(credentials, "GET", ha1) == credentials.response


def sign(nonce: str, *, password: str = "secret-pw", qop: bool = True) -> digest.Credentials:
    base = digest.Credentials("bob", digest.REALM, nonce, "sip:chorus", "", *(
        ("auth", "00000001", "c0ffee") if qop else (None, None, None)
    ))  # fmt: skip
    response = digest.expected_response(base, "REGISTER", digest.ha1("bob", password))
    return digest.Credentials(**{**base.__dict__, "response": response})


@pytest.mark.parametrize("qop", [True, False])
def test_our_nonce_with_the_right_password_passes(qop):
    nonce = digest.new_nonce(KEY, NOW)
    good = sign(nonce, qop=qop)
    assert digest.verify(good, "REGISTER", digest.ha1("bob", "secret-pw"), key=KEY, now=NOW) is None


def test_wrong_password_forged_or_old_nonce_and_other_realms_are_refused():
    ha1 = digest.ha1("bob", "secret-pw")
    nonce = digest.new_nonce(KEY, NOW)
    assert digest.verify(sign(nonce, password="guess"), "REGISTER", ha1, key=KEY, now=NOW) == "bad"
    forged = nonce[:-1] + ("0" if nonce[-1] != "0" else "1")
    assert digest.verify(sign(forged), "REGISTER", ha1, key=KEY, now=NOW) == "bad"
    assert digest.verify(sign(nonce), "REGISTER", ha1, key="other", now=NOW) == "bad"
    later = NOW + digest.NONCE_TTL_S + 1
    assert digest.verify(sign(nonce), "REGISTER", ha1, key=KEY, now=later) == "stale"
    other_realm = digest.Credentials(**{**sign(nonce).__dict__, "realm": "elsewhere"})
    assert digest.verify(other_realm, "REGISTER", ha1, key=KEY, now=NOW) == "bad"
    assert digest.verify(sign(nonce), "INVITE", ha1, key=KEY, now=NOW) == "bad"  # method bound


@pytest.mark.parametrize(
    "value",
    ["Basic Ym9iOnB3", "Digest", 'Digest username="bob"', "Digest username=", 'Digest a="b" c'],
)
def test_malformed_authorization_values_are_not_credentials(value):
    assert digest.parse_credentials(value) is None


def test_a_challenge_carries_a_fresh_verifiable_nonce():
    value = digest.challenge(KEY, NOW, stale=True)
    assert value.startswith('Digest realm="chorus", nonce="') and value.endswith("stale=true")
    nonce = value.split('nonce="')[1].split('"')[0]
    assert digest.nonce_age(KEY, nonce, NOW + 3) == 3
    assert digest.new_nonce(KEY, NOW) != digest.new_nonce(KEY, NOW)
