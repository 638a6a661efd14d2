"""Digest authentication: published vectors, client/server round trips, retry policy, parser robustness."""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipagent.sip.auth import (
    ALGORITHMS,
    DigestChallenge,
    DigestClient,
    DigestCredentials,
    DigestServer,
    VerifyResult,
    compute_response,
)
from sipagent.sip.errors import LocalProtocolError, RemoteProtocolError

pytestmark = pytest.mark.unit

# RFC 7616 §3.9.1 (inputs and expected responses as printed in the RFC).
RFC7616_REALM = "http-auth@example.org"
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_MD5 = "8ca523f5e9506fed4657c9700eebdbec"
RFC7616_SHA256 = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
SIP_URI = "sip:registrar.example.com"


def fixed(value: str) -> Callable[[], str]:
    return lambda: value


def counter(prefix: str) -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"{prefix}{next(numbers)}"


def server(**kwargs: Any) -> DigestServer:
    users = {"alice": "secret", "bob": "hunter2"}
    return DigestServer("example.com", users.get, b"k" * 32, **{"salt_factory": counter("salt"), **kwargs})


def wire(credentials: DigestCredentials) -> DigestCredentials:
    """What the server sees after the header went through serialisation."""
    return DigestCredentials.parse(credentials.serialize())


# ---------------------------------------------------------------- published vectors


@pytest.mark.parametrize(("algorithm", "expected"), [("MD5", RFC7616_MD5), ("SHA-256", RFC7616_SHA256)])
def test_rfc7616_vectors_through_the_client(algorithm: str, expected: str) -> None:
    header = (
        f'Digest realm="{RFC7616_REALM}", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}"'
    )
    client = DigestClient("Mufasa", "Circle of Life", cnonce_factory=fixed(RFC7616_CNONCE))
    creds = client.authorize(DigestChallenge.parse(header), "GET", "/dir/index.html")
    assert (creds.response, creds.qop, creds.nc, creds.cnonce) == (expected, "auth", 1, RFC7616_CNONCE)
    assert (creds.opaque, creds.algorithm, creds.username) == (RFC7616_OPAQUE, algorithm, "Mufasa")
    assert re.search(r"\bnc=00000001\b", creds.serialize()) and re.search(r"\bqop=auth(,|$)", creds.serialize())


def test_rfc7616_authorization_example_parses_and_checks() -> None:
    header = (
        'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=MD5, '
        f'nonce="{RFC7616_NONCE}", nc=00000001, cnonce="{RFC7616_CNONCE}", qop=auth, '
        f'response="{RFC7616_MD5}", opaque="{RFC7616_OPAQUE}"'
    )
    c = DigestCredentials.parse(header)
    assert (c.username, c.uri, c.nc, c.qop, c.opaque) == ("Mufasa", "/dir/index.html", 1, "auth", RFC7616_OPAQUE)
    again = compute_response(
        c.algorithm, c.username, c.realm, "Circle of Life", c.nonce, "GET", c.uri, qop=c.qop, nc=c.nc, cnonce=c.cnonce
    )
    assert again == c.response


def test_rfc7616_sha512_256_userhash_with_erratum_4897() -> None:
    # RFC 7616 §3.9.2 inputs; its printed username hash and response were made with a pre-standard
    # SHA-512/256, and erratum 4897 gives the values of the standard one, used here.
    header = (
        'Digest realm="api@example.org", qop="auth", algorithm=SHA-512-256, '
        'nonce="5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK", '
        'opaque="HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS", charset=UTF-8, userhash=true'
    )
    challenge = DigestChallenge.parse(header)
    assert challenge.userhash and challenge.extra == (("charset", "UTF-8"),)
    cnonce = "NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v"
    client = DigestClient("J\u00e4s\u00f8n Doe", "Secret, or not?", fixed(cnonce))
    if not client.supports(challenge):
        pytest.skip("this OpenSSL has no SHA-512/256")
    creds = client.authorize(challenge, "GET", "/doe.json")
    assert creds.username == "793263caabb707a56211940d90411ea4a575adeccb7e360aeb624ed06ece9b0b"
    assert creds.response == "3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5"
    assert creds.userhash and "userhash=true" in creds.serialize()


def test_rfc2617_vector() -> None:
    # RFC 2617 §3.5 (note the capital O in the password there).
    header = (
        'Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    client = DigestClient("Mufasa", "Circle Of Life", cnonce_factory=fixed("0a4f113b"))
    creds = client.authorize(DigestChallenge.parse(header), "GET", "/dir/index.html")
    assert creds.response == "6629fae49393a05397450978507c4ef1"
    assert creds.algorithm == "MD5" and creds.nc == 1


# ---------------------------------------------------------------- independent implementation


@pytest.mark.parametrize(
    ("algorithm", "qop"), [("MD5", "auth"), ("MD5-sess", "auth"), ("SHA-256", "auth"), ("MD5", None)]
)
def test_matches_requests_http_digest_auth(algorithm: str, qop: str | None) -> None:
    requests_auth = pytest.importorskip("requests.auth")
    theirs = requests_auth.HTTPDigestAuth("Mufasa", "Circle of Life")
    theirs.init_per_thread_state()
    chal = {"realm": RFC7616_REALM, "nonce": RFC7616_NONCE, "algorithm": algorithm, "opaque": RFC7616_OPAQUE}
    if qop:
        chal["qop"] = qop
    theirs._thread_local.chal = chal
    header = theirs.build_digest_header("GET", "http://example.org/dir/index.html")
    their_creds = DigestCredentials.parse(header)  # our parser reading a foreign serialiser
    client = DigestClient("Mufasa", "Circle of Life", cnonce_factory=fixed(their_creds.cnonce or "unused"))
    challenge = DigestChallenge(RFC7616_REALM, RFC7616_NONCE, algorithm, (qop,) if qop else (), RFC7616_OPAQUE)
    ours = client.authorize(challenge, "GET", "/dir/index.html")
    assert (ours.response, ours.nc, ours.qop) == (their_creds.response, their_creds.nc, their_creds.qop)


# ---------------------------------------------------------------- client/server round trips


ROUND_TRIPS = [(a, q) for a in ALGORITHMS for q in ("auth", "auth-int", None) if not (q is None and "sess" in a)]


@pytest.mark.parametrize(("algorithm", "qop"), ROUND_TRIPS)
def test_round_trip(algorithm: str, qop: str | None) -> None:
    srv = server(algorithms=(algorithm,), qop=(qop,) if qop else ())
    challenge = DigestChallenge.parse(srv.challenge(now=10.0)[0].serialize())
    client = DigestClient("alice", "secret", cnonce_factory=counter("c"))
    if not client.supports(challenge):
        pytest.skip(f"{algorithm} not available here")
    body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
    creds = wire(client.authorize(challenge, "INVITE", SIP_URI, body))
    assert creds.qop == qop and creds.algorithm == algorithm
    assert srv.verify(creds, "INVITE", body, now=11.0, request_uri=SIP_URI) is VerifyResult.OK
    # The method is covered in every mode, the body only with auth-int.
    later = wire(client.authorize(challenge, "INVITE", SIP_URI, body))
    assert srv.verify(later, "BYE", body, now=12.0) is VerifyResult.BAD
    expected = VerifyResult.BAD if qop == "auth-int" else VerifyResult.OK
    last = wire(client.authorize(challenge, "INVITE", SIP_URI, body))
    assert srv.verify(last, "INVITE", body + b"x", now=12.0) is expected


def test_auth_preferred_and_auth_int_only_when_alone() -> None:
    client = DigestClient("alice", "secret", fixed("c"))
    both = DigestChallenge("r", "n", "SHA-256", ("auth-int", "auth"))
    only_int = DigestChallenge("r", "n2", "SHA-256", ("auth-int",))
    unknown = DigestChallenge("r", "n3", "SHA-256", ("auth-conf",))
    assert client.authorize(both, "REGISTER", SIP_URI).qop == "auth"
    assert client.authorize(only_int, "REGISTER", SIP_URI).qop == "auth-int"
    assert not client.supports(unknown)
    with pytest.raises(RemoteProtocolError):
        client.authorize(unknown, "REGISTER", SIP_URI)


def test_rfc2069_answer_has_no_nc_or_cnonce() -> None:
    calls: list[str] = []

    def factory() -> str:
        calls.append("x")
        return "x"

    creds = DigestClient("alice", "secret", factory).authorize(DigestChallenge("r", "n"), "REGISTER", SIP_URI)
    assert (creds.qop, creds.nc, creds.cnonce, calls) == (None, None, None, [])
    assert "nc=" not in creds.serialize() and "cnonce" not in creds.serialize()

    # RFC 2617 §3.2.2.1: response = H(H(A1):nonce:H(A2)), computed here from hashlib directly.
    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    assert creds.response == md5(f"{md5('alice:r:secret')}:n:{md5('REGISTER:' + SIP_URI)}")


def test_nonce_count_increments_resets_and_replays_are_rejected() -> None:
    srv = server()
    client = DigestClient("alice", "secret", counter("c"))
    (challenge, _) = srv.challenge(now=0.0)
    first = wire(client.authorize(challenge, "REGISTER", SIP_URI))
    second = wire(client.authorize_again("example.com", "REGISTER", SIP_URI) or first)
    assert (first.nc, second.nc) == (1, 2)
    assert srv.verify(first, "REGISTER", b"", now=1.0) is VerifyResult.OK
    assert srv.verify(second, "REGISTER", b"", now=2.0) is VerifyResult.OK
    assert srv.verify(second, "REGISTER", b"", now=3.0) is VerifyResult.BAD  # same nc again
    assert srv.verify(first, "REGISTER", b"", now=3.0) is VerifyResult.BAD  # older nc
    third = wire(client.authorize(challenge, "REGISTER", SIP_URI))
    assert third.nc == 3 and srv.verify(third, "REGISTER", b"", now=4.0) is VerifyResult.OK
    (fresh, _) = srv.challenge(now=5.0)
    assert fresh.nonce != challenge.nonce
    assert client.authorize(fresh, "REGISTER", SIP_URI).nc == 1
    assert client.authorize_again("example.com", "REGISTER", SIP_URI).nc == 2  # type: ignore[union-attr]
    assert client.authorize_again("elsewhere", "REGISTER", SIP_URI) is None
    client.forget("example.com")
    assert client.authorize_again("example.com", "REGISTER", SIP_URI) is None


def test_defaults_and_housekeeping() -> None:
    client = DigestClient("alice", "secret", max_nonces=2)  # production cnonces: secrets.token_hex
    creds = [client.authorize(DigestChallenge("r", f"n{i}", qop=("auth",)), "INVITE", SIP_URI) for i in range(3)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", c.cnonce or "") for c in creds) and len({c.cnonce for c in creds}) == 3
    # Only the two newest nonces keep their counts; the oldest starts again at 1.
    assert client.authorize(DigestChallenge("r", "n0", qop=("auth",)), "INVITE", SIP_URI).nc == 1
    assert client.authorize(DigestChallenge("r", "n2", qop=("auth",)), "INVITE", SIP_URI).nc == 2
    assert not client.should_retry(DigestChallenge("r", "n", "SHA-1"))
    client.forget()
    assert client.authorize_again("r", "INVITE", SIP_URI) is None


def test_counts_are_kept_per_nonce_for_interleaved_challenges() -> None:
    client = DigestClient("alice", "secret", counter("c"))
    a, b = DigestChallenge("r", "A", qop=("auth",)), DigestChallenge("r", "B", qop=("auth",))
    ncs = [client.authorize(ch, "INVITE", SIP_URI).nc for ch in (a, b, a, b, a)]
    assert ncs == [1, 1, 2, 2, 3]


def test_stale_nonce_flow() -> None:
    srv = server(nonce_lifetime=300.0)
    client = DigestClient("alice", "secret", counter("c"))
    sent = [wire(client.authorize(srv.challenge(now=0.0)[0], "REGISTER", SIP_URI))]
    assert srv.verify(sent[0], "REGISTER", b"", now=10.0) is VerifyResult.OK
    # A refresh an hour later reuses the cached nonce: the digest is right but the nonce too old.
    sent = [wire(client.authorize_again("example.com", "REGISTER", SIP_URI) or sent[0])]
    assert srv.verify(sent[0], "REGISTER", b"", now=3600.0) is VerifyResult.STALE
    rechallenge = DigestChallenge.parse(srv.challenge(now=3600.0, stale=True)[0].serialize())
    assert rechallenge.stale and client.should_retry(rechallenge, sent)
    retry = wire(client.authorize(rechallenge, "REGISTER", SIP_URI))
    assert retry.nc == 1 and srv.verify(retry, "REGISTER", b"", now=3601.0) is VerifyResult.OK
    # A "stale" challenge repeating the nonce we just used is a broken server: no loop.
    assert not client.should_retry(DigestChallenge("example.com", retry.nonce, "SHA-256", stale=True), [retry])


def run_registration(client: DigestClient, srv: DigestServer, max_requests: int = 5) -> tuple[bool, int]:
    """A UA's 401 loop, as the transaction layer will drive it: returns (registered, requests sent)."""
    sent: list[DigestCredentials] = []
    for request in range(1, max_requests + 1):
        if sent and all(srv.verify(wire(c), "REGISTER", b"", now=float(request)) is VerifyResult.OK for c in sent):
            return True, request
        # The 401: every challenge goes through the header text, as it would on the wire.
        challenges = client.choose(DigestChallenge.parse(c.serialize()) for c in srv.challenge(now=float(request)))
        if not challenges or not all(client.should_retry(ch, sent) for ch in challenges):
            return False, request
        sent = client.authorize_all(challenges, "REGISTER", SIP_URI)
    return False, max_requests


def test_right_password_registers_on_the_second_request() -> None:
    assert run_registration(DigestClient("alice", "secret", counter("c")), server()) == (True, 2)


def test_wrong_password_is_bad_and_the_client_gives_up_after_one_retry() -> None:
    srv = server()
    client = DigestClient("alice", "wrong", counter("c"))
    creds = wire(client.authorize(srv.challenge(now=0.0)[0], "REGISTER", SIP_URI))
    assert srv.verify(creds, "REGISTER", b"", now=1.0) is VerifyResult.BAD
    assert run_registration(client, srv) == (False, 2)


def test_preauthorised_request_with_a_forgotten_nonce_gets_one_more_try() -> None:
    client = DigestClient("alice", "secret", counter("c"))
    client.authorize(DigestChallenge("example.com", "old", "SHA-256", ("auth",)), "REGISTER", SIP_URI)
    reused = client.authorize_again("example.com", "REGISTER", SIP_URI)
    assert reused is not None and reused.nc == 2
    new = DigestChallenge("example.com", "new", "SHA-256", ("auth",))
    assert client.should_retry(new, [reused])
    answer = client.authorize(new, "REGISTER", SIP_URI)
    assert not client.should_retry(DigestChallenge("example.com", "newer", "SHA-256", ("auth",)), [answer])
    assert client.should_retry(new, [DigestCredentials("u", "other-realm", "n", SIP_URI, "r")])


# ---------------------------------------------------------------- several challenges


def test_prefers_sha256_over_md5_in_any_order() -> None:
    md5, sha = DigestChallenge("r", "n1", "MD5", ("auth",)), DigestChallenge("r", "n2", "SHA-256", ("auth",))
    client = DigestClient("alice", "secret", fixed("c"))
    assert client.choose([md5, sha]) == [sha] and client.choose([sha, md5]) == [sha]
    only_md5 = DigestClient("alice", "secret", fixed("c"), algorithms=("MD5",))
    assert only_md5.choose([sha, md5]) == [md5]
    aka = DigestChallenge("r", "n3", "AKAv1-MD5", ("auth",))
    assert client.choose([aka]) == [] and client.choose([aka, md5]) == [md5]
    assert client.choose([DigestChallenge("r", "n4", "MD5-sess")]) == []  # -sess needs a qop


def test_one_credential_per_realm_for_several_proxies() -> None:
    edge = server()
    core = DigestServer("core.example.net", {"alice": "secret"}.get, b"other-secret", algorithms=("MD5",))
    challenges = edge.challenge(now=0.0) + core.challenge(now=0.0)
    creds = DigestClient("alice", "secret", counter("c")).authorize_all(challenges, "INVITE", SIP_URI, b"sdp")
    assert [(c.realm, c.algorithm) for c in creds] == [("example.com", "SHA-256"), ("core.example.net", "MD5")]
    assert edge.verify(wire(creds[0]), "INVITE", b"sdp", now=1.0) is VerifyResult.OK
    assert core.verify(wire(creds[1]), "INVITE", b"sdp", now=1.0) is VerifyResult.OK


def test_auth_user_differs_from_account_user() -> None:
    srv = DigestServer("example.com", {"auth-7001": "pw"}.get, b"s", algorithms=("MD5",))
    creds = DigestClient("auth-7001", "pw", fixed("c")).authorize(srv.challenge(0.0)[0], "REGISTER", "sip:1000@pbx")
    assert creds.username == "auth-7001" and srv.verify(creds, "REGISTER", b"", now=1.0) is VerifyResult.OK


# ---------------------------------------------------------------- server checks


def test_server_rejects_mismatches() -> None:
    srv = server()
    client = DigestClient("alice", "secret", counter("c"))
    challenge = srv.challenge(now=0.0)[0]

    def fresh() -> DigestCredentials:
        return wire(client.authorize(challenge, "REGISTER", SIP_URI))

    def swap(**changes: Any) -> DigestCredentials:
        return replace(fresh(), **changes)

    assert srv.verify(fresh(), "REGISTER", b"", now=1.0, request_uri="sip:other.example.com") is VerifyResult.BAD
    assert srv.verify(swap(realm="evil.com"), "REGISTER", b"", now=1.0) is VerifyResult.BAD
    assert srv.verify(swap(username="mallory"), "REGISTER", b"", now=1.0) is VerifyResult.BAD
    assert srv.verify(swap(username="bob"), "REGISTER", b"", now=1.0) is VerifyResult.BAD
    assert srv.verify(swap(uri="sip:elsewhere"), "REGISTER", b"", now=1.0) is VerifyResult.BAD
    assert srv.verify(swap(nonce=challenge.nonce[:-1] + "0"), "REGISTER", b"", now=1.0) is VerifyResult.BAD
    assert srv.verify(swap(nonce="1.forged.nonce"), "REGISTER", b"", now=1.0) is VerifyResult.BAD
    assert srv.verify(swap(nonce="1.\udcff.nonce"), "REGISTER", b"", now=1.0) is VerifyResult.BAD
    assert srv.verify(swap(qop=None, nc=None, cnonce=None), "REGISTER", b"", now=1.0) is VerifyResult.BAD
    assert srv.verify(swap(algorithm="SHA-512-256"), "REGISTER", b"", now=1.0) is VerifyResult.BAD
    assert srv.verify(swap(userhash=True), "REGISTER", b"", now=1.0) is VerifyResult.BAD
    assert srv.verify(swap(response="\udcff"), "REGISTER", b"", now=1.0) is VerifyResult.BAD
    rfc2069 = DigestServer("example.com", {"alice": "secret"}.get, b"k", qop=())
    answer = client.authorize(rfc2069.challenge(now=0.0)[0], "REGISTER", SIP_URI)
    assert rfc2069.verify(answer, "REGISTER", b"", now=1.0) is VerifyResult.OK
    assert rfc2069.verify(replace(answer, qop="auth", nc=1, cnonce="c"), "REGISTER", b"", 1.0) is VerifyResult.BAD
    other = DigestServer("example.com", {"alice": "secret"}.get, b"another secret")
    assert other.verify(fresh(), "REGISTER", b"", now=1.0) is VerifyResult.BAD  # nonce not signed by it
    assert srv.verify(fresh(), "REGISTER", b"", now=1.0) is VerifyResult.OK


def test_nonce_from_the_future_is_stale_and_a_fresh_one_never_is() -> None:
    srv = server()
    for now in (0.0006, 1234.5678, -3.0001):  # sub-millisecond clocks: the nonce must not look issued later
        answer = DigestClient("alice", "secret", fixed("c")).authorize(srv.challenge(now)[0], "REGISTER", SIP_URI)
        assert srv.verify(answer, "REGISTER", b"", now=now) is VerifyResult.OK
    creds = DigestClient("alice", "secret", fixed("c")).authorize(srv.challenge(now=500.0)[0], "REGISTER", SIP_URI)
    assert srv.verify(creds, "REGISTER", b"", now=10.0) is VerifyResult.STALE


def test_nonce_count_map_is_bounded_and_never_lets_a_replay_through() -> None:
    srv = server(max_tracked_nonces=2)
    client = DigestClient("alice", "secret", counter("c"))
    challenges = [srv.challenge(now=float(t))[0] for t in range(3)]
    first = [wire(client.authorize(ch, "REGISTER", SIP_URI)) for ch in challenges]
    assert [srv.verify(c, "REGISTER", b"", now=5.0) for c in first] == [VerifyResult.OK] * 3
    # The first nonce's count was evicted: a replay cannot be told apart, so it is answered stale, never OK.
    assert srv.verify(first[0], "REGISTER", b"", now=6.0) is VerifyResult.STALE
    assert srv.verify(wire(client.authorize(challenges[0], "REGISTER", SIP_URI)), "REGISTER", b"", now=6.0) is (
        VerifyResult.STALE
    )
    assert srv.verify(wire(client.authorize(challenges[2], "REGISTER", SIP_URI)), "REGISTER", b"", now=6.0) is (
        VerifyResult.OK
    )


def test_server_configuration_is_checked() -> None:
    for bad in (
        {"algorithms": ("SHA-1",)},
        {"algorithms": ()},
        {"qop": ("auth-conf",)},
        {"qop": (), "algorithms": ("MD5-sess",)},
        {"max_tracked_nonces": 0},
    ):
        with pytest.raises(ValueError):
            server(**bad)
    with pytest.raises(ValueError):
        DigestServer("r", lambda name: None, b"")
    challenges = server(algorithms=("sha-256", "md5")).challenge(now=0.0, stale=True)
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"] and all(c.stale for c in challenges)
    assert challenges[0].nonce == challenges[1].nonce and challenges[0].qop == ("auth",)


def test_compute_response_rejects_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        compute_response("SHA-1", "u", "r", "p", "n", "GET", "/")
    with pytest.raises(LocalProtocolError):
        compute_response("MD5", "u", "r", "p", "n", "GET", "/", qop="auth")  # no nc/cnonce
    with pytest.raises(LocalProtocolError):
        compute_response("MD5-sess", "u", "r", "p", "n", "GET", "/")


# ---------------------------------------------------------------- parser edge cases


def test_escaped_quotes_commas_spaces_and_case() -> None:
    c = DigestChallenge.parse(
        '  DIGEST   REALM = "a \\"quoted\\", realm" ,, Nonce=  "n\\\\x"  ,QOP="auth , AUTH-INT",'
        "ALGORITHM=sha-256, Stale=TRUE, domain=\" sip:a.example.com  sip:b.example.com \", x-Custom='1'"
    )
    assert c.realm == 'a "quoted", realm' and c.nonce == "n\\x"
    assert (c.qop, c.algorithm, c.stale) == (("auth", "auth-int"), "SHA-256", True)
    assert c.domain == ("sip:a.example.com", "sip:b.example.com")
    assert c.extra == (("x-custom", "'1'"),)
    assert DigestChallenge.parse(c.serialize()) == c


def test_lenient_values() -> None:
    c = DigestChallenge.parse('Digest realm=example.com, nonce="", algorithm="MD5", qop=auth, stale=false, userhash=x')
    assert (c.realm, c.nonce, c.algorithm, c.qop) == ("example.com", "", "MD5", ("auth",))
    assert not c.stale and not c.userhash
    assert DigestChallenge.parse('Digest realm="r", nonce="n", algorithm=AKAv1-MD5').algorithm == "AKAv1-MD5"
    creds = DigestCredentials.parse('Digest username="a", realm="r", nonce="n", uri=sip:bob@example.com, response="x"')
    assert (creds.uri, creds.algorithm, creds.qop, creds.nc) == ("sip:bob@example.com", "MD5", None, None)
    upper = DigestCredentials.parse(
        'Digest username="a", realm="r", nonce="n", uri="u", response="x", qop="AUTH", nc=0000000A, cnonce="c"'
    )
    assert (upper.qop, upper.nc) == ("auth", 10)


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ('Basic realm="r"', "scheme"),
        ("", "scheme"),
        ('Digest nonce="n"', "realm"),
        ('Digest realm="r"', "nonce"),
        ('Digest realm="r, nonce="n"', "parameter"),
        ('Digest realm="r", realm="s", nonce="n"', "repeated"),
        ('Digest realm "r", nonce="n"', "parameter"),
        ('Digest realm="r" nonce="n"', "','"),
        ('Digest realm="r"x, nonce="n"', "','"),
        ('Digest realm=, nonce="n"', "parameter"),
        ('Digest realm="r\r\nInjected: yes", nonce="n"', "control"),
        ('Digest realm="r\\', "parameter"),
        ('Digestrealm="r", nonce="n"', "scheme"),
    ],
)
def test_challenge_parse_errors_name_the_field(header: str, field: str) -> None:
    with pytest.raises(RemoteProtocolError, match=field):
        DigestChallenge.parse(header)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ('realm="r", nonce="n", uri="u", response="x"', "username"),
        ('username="a", nonce="n", uri="u", response="x"', "realm"),
        ('username="a", realm="r", uri="u", response="x"', "nonce"),
        ('username="a", realm="r", nonce="n", response="x"', "uri"),
        ('username="a", realm="r", nonce="n", uri="u"', "response"),
        ('username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, nc=00000001', "cnonce"),
        ('username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, cnonce="c"', "nc"),
        ('username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, cnonce="c", nc=1', "nc"),
        ('username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, cnonce="c", nc=0000000g', "nc"),
    ],
)
def test_credentials_parse_errors_name_the_field(params: str, field: str) -> None:
    with pytest.raises(RemoteProtocolError, match=field):
        DigestCredentials.parse("Digest " + params)


def test_serialize_refuses_what_cannot_be_a_header() -> None:
    with pytest.raises(LocalProtocolError, match="realm"):
        DigestChallenge("r\r\nVia: evil", "n").serialize()
    with pytest.raises(LocalProtocolError, match="nc"):
        DigestCredentials("u", "r", "n", "/", "x", nc=1 << 32).serialize()
    with pytest.raises(LocalProtocolError, match="extra"):
        DigestChallenge("r", "n", extra=(("nonce", "again"),)).serialize()
    with pytest.raises(LocalProtocolError, match="extra"):
        DigestCredentials("u", "r", "n", "/", "x", extra=(("bad name", "v"),)).serialize()


def test_credentials_serialise_per_rfc7616() -> None:
    text = DigestCredentials('a"b', "r", "n", "sip:x", "ff", "SHA-256", "c", "o", "auth", 255).serialize()
    assert text == (
        'Digest username="a\\"b", realm="r", nonce="n", uri="sip:x", response="ff", algorithm=SHA-256, '
        'cnonce="c", opaque="o", qop=auth, nc=000000ff'
    )


# ---------------------------------------------------------------- properties

SOUP = st.text(alphabet='Digest realmnoc=",\\ \t\r\x00aqu-UTH0123456789', max_size=80)
VALUE = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=20)
TOKEN = st.from_regex(r"[a-z0-9][a-z0-9.!%*_+`'~-]{0,8}", fullmatch=True)


OPTIONAL = st.sampled_from(["qop", "algorithm", "opaque", "stale", "domain", "userhash", "charset", "x-a", "nc"])
SPACE = st.sampled_from(["", " ", "\t", "  "])
TOKEN_RE = re.compile(r"[A-Za-z0-9!%*_+`'~.-]+")


@st.composite
def challenge_headers(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    """A well-formed header, each value quoted or bare at random, names in random case, random spacing."""
    params = {"realm": draw(VALUE), "nonce": draw(VALUE)}
    params |= draw(st.dictionaries(OPTIONAL, VALUE, max_size=5))
    parts = []
    for name in draw(st.permutations(list(params))):
        value = params[name]
        bare = TOKEN_RE.fullmatch(value) is not None and draw(st.booleans())
        text = value if bare else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        spelled = "".join(c.upper() if draw(st.booleans()) else c for c in name)
        parts.append(f"{draw(SPACE)}{spelled}{draw(SPACE)}={draw(SPACE)}{text}{draw(SPACE)}")
    return draw(st.sampled_from(["Digest ", "digest  ", "DIGEST\t"])) + ",".join(parts), params


@given(challenge_headers())
def test_well_formed_headers_give_back_their_values(case: tuple[str, dict[str, str]]) -> None:
    header, params = case
    challenge = DigestChallenge.parse(header)
    assert (challenge.realm, challenge.nonce) == (params["realm"], params["nonce"])
    assert challenge.opaque == params.get("opaque")
    assert dict(challenge.extra) == {k: v for k, v in params.items() if k in ("charset", "x-a", "nc")}
    assert DigestChallenge.parse(challenge.serialize()) == challenge


@settings(max_examples=400)
@given(
    st.one_of(
        st.text(max_size=120),
        SOUP,
        SOUP.map(lambda s: "Digest " + s),
        st.tuples(challenge_headers(), st.integers(0, 200), st.sampled_from('",\\= \r\x00x')).map(
            lambda t: t[0][0][: t[1]] + t[2] + t[0][0][t[1] :]  # a well-formed header with one character put in
        ),
    )
)
def test_parsers_raise_only_remote_protocol_error(value: str) -> None:
    for parse in (DigestChallenge.parse, DigestCredentials.parse):
        try:
            parsed = parse(value)
        except RemoteProtocolError:
            continue
        assert parse(parsed.serialize()) == parsed


EXTRA = st.lists(st.tuples(TOKEN.map(lambda t: "x-" + t), VALUE), max_size=3, unique_by=lambda p: p[0]).map(tuple)
ALGORITHM = st.sampled_from((*ALGORITHMS, "AKAv1-MD5", "odd value"))

CHALLENGES = st.builds(
    DigestChallenge,
    realm=VALUE,
    nonce=VALUE,
    algorithm=ALGORITHM,
    qop=st.lists(TOKEN, max_size=3).map(tuple),
    opaque=st.none() | VALUE,
    stale=st.booleans(),
    domain=st.lists(st.from_regex(r"[a-z:@./0-9]+", fullmatch=True), max_size=3).map(tuple),
    userhash=st.booleans(),
    extra=EXTRA,
)


@given(CHALLENGES)
def test_challenge_round_trip(challenge: DigestChallenge) -> None:
    assert DigestChallenge.parse(challenge.serialize()) == challenge


@st.composite
def credentials(draw: st.DrawFn) -> DigestCredentials:
    qop = draw(st.none() | TOKEN)
    return DigestCredentials(
        username=draw(VALUE),
        realm=draw(VALUE),
        nonce=draw(VALUE),
        uri=draw(VALUE),
        response=draw(VALUE),
        algorithm=draw(ALGORITHM),
        cnonce=draw(VALUE) if qop is not None else draw(st.none() | VALUE),
        opaque=draw(st.none() | VALUE),
        qop=qop,
        nc=draw(st.integers(0, 0xFFFFFFFF)) if qop is not None else draw(st.none() | st.integers(0, 0xFFFFFFFF)),
        userhash=draw(st.booleans()),
        extra=draw(EXTRA),
    )


@given(credentials())
def test_credentials_round_trip(creds: DigestCredentials) -> None:
    assert DigestCredentials.parse(creds.serialize()) == creds


@settings(max_examples=50)
@given(
    user=VALUE,
    password=VALUE,
    uri=VALUE,
    body=st.binary(max_size=64),
    algorithm=st.sampled_from(("SHA-256", "MD5", "SHA-256-sess")),
    qop=st.sampled_from(("auth", "auth-int")),
)
def test_any_account_round_trips(user: str, password: str, uri: str, body: bytes, algorithm: str, qop: str) -> None:
    def lookup(name: str) -> str | None:
        return password if name == user else None

    srv = DigestServer("r", lookup, b"s", algorithms=(algorithm,), qop=(qop,))
    creds = DigestClient(user, password, fixed("c")).authorize(srv.challenge(now=0.0)[0], "MESSAGE", uri, body)
    assert srv.verify(wire(creds), "MESSAGE", body, now=1.0, request_uri=uri) is VerifyResult.OK
