"""Hypothesis strategies for the SIP message layer, shared by the tests in this folder."""

from __future__ import annotations

import string

from hypothesis import strategies as st

from sipagent.sip.headers import CSeq, Via
from sipagent.sip.message import Headers, SipRequest, SipResponse
from sipagent.sip.uri import AbsoluteUri, NameAddress, SipUri

TOKEN_ALPHABET = string.ascii_letters + string.digits + "-.!%*_+`'~"

tokens = st.text(alphabet=TOKEN_ALPHABET, min_size=1, max_size=12)
# Any character but surrogates: URI components escape whatever they cannot carry raw.
any_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=16)
nonempty_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=16)
# Header values and display names cannot hold CR or LF (there is no escape for them in SIP).
line_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=24)

_LOWER_DIGITS = string.ascii_lowercase + string.digits
# Labels start with a letter (a toplabel must, and all-digit names would read as IPv4) and end alphanumeric.
_label = st.builds(
    lambda first, rest: (first + rest).rstrip("-"),
    st.sampled_from(string.ascii_lowercase),
    st.text(alphabet=_LOWER_DIGITS + "-", max_size=6),
)
hostnames = st.lists(_label, min_size=1, max_size=4).map(".".join)
hosts = st.one_of(
    hostnames,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
ports = st.none() | st.integers(min_value=0, max_value=65535)
uri_params = st.lists(st.tuples(nonempty_text, st.none() | any_text), max_size=3).map(tuple)
uri_headers = st.lists(st.tuples(nonempty_text, any_text), max_size=2).map(tuple)


@st.composite
def sip_uris(draw: st.DrawFn, *, with_headers: bool = True) -> SipUri:
    user = draw(st.none() | nonempty_text)
    password = draw(st.none() | any_text) if user is not None else None
    return SipUri(
        draw(st.sampled_from(["sip", "sips"])),
        user,
        password,
        draw(hosts),
        draw(ports),
        draw(uri_params),
        draw(uri_headers) if with_headers else (),
    )


tel_uris = st.builds(
    lambda digit, rest, params: SipUri("tel", "+" + digit + rest, params=params),
    st.sampled_from(string.digits),
    st.text(alphabet=string.digits + "-.()", max_size=10),
    uri_params,
)
absolute_uris = st.builds(
    AbsoluteUri,
    st.builds(
        lambda a, b: a + b, st.sampled_from(string.ascii_lowercase), st.text(_LOWER_DIGITS + "+.-", max_size=6)
    ).filter(lambda scheme: scheme not in ("sip", "sips", "tel")),
    st.text(alphabet=string.ascii_letters + string.digits + "/._~!$&'()*+=:@%-", min_size=1, max_size=20),
)
header_param_values = (
    st.none() | tokens | line_text.map(lambda text: '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
)
header_params = st.lists(st.tuples(tokens, header_param_values), max_size=3).map(tuple)


@st.composite
def name_addresses(draw: st.DrawFn) -> NameAddress:
    uri = draw(st.one_of(sip_uris(), tel_uris, absolute_uris))
    return NameAddress(draw(st.none() | line_text), uri, draw(header_params))


# Via parameters other than the ones whose values are checked (branch, rport, ttl) or reshaped (received).
_via_param_names = tokens.filter(lambda name: name.lower() not in ("branch", "rport", "ttl", "received"))


@st.composite
def vias(draw: st.DrawFn) -> Via:
    params = (("branch", "z9hG4bK" + draw(tokens)),) + draw(
        st.lists(st.tuples(_via_param_names, st.none() | tokens), max_size=2).map(tuple)
    )
    if draw(st.booleans()):
        params += (("rport", draw(st.none() | st.integers(0, 65535).map(str))),)
    return Via(draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS"])), draw(hosts), draw(ports), params)


# Extension headers: an "X-" prefix keeps clear of every known name and compact form; values lose no
# surrounding whitespace because the parser would strip it.
extension_headers = st.lists(
    st.tuples(tokens.map(lambda t: "X-" + t), line_text.map(lambda v: v.strip(" \t"))), max_size=4
)


@st.composite
def core_headers(draw: st.DrawFn, method: str) -> Headers:
    headers = Headers()
    for via in draw(st.lists(vias(), min_size=1, max_size=3)):
        headers.add("Via", str(via))
    headers.add("From", str(draw(name_addresses()).with_tag(draw(tokens))))
    headers.add("To", str(draw(name_addresses())))
    headers.add("Call-ID", draw(tokens) + "@" + draw(hostnames))
    headers.add("CSeq", str(CSeq(draw(st.integers(0, 2**32 - 1)), method)))
    for name, value in draw(extension_headers):
        headers.add(name, value)
    return headers


@st.composite
def requests(draw: st.DrawFn) -> SipRequest:
    method = draw(tokens)
    headers = draw(core_headers(method))
    headers.add("Max-Forwards", str(draw(st.integers(0, 255))))
    body = draw(st.binary(max_size=64))
    if body:
        headers.add("Content-Type", "application/octet-stream")
    return SipRequest(method, draw(sip_uris(with_headers=False)), headers, body)


@st.composite
def responses(draw: st.DrawFn) -> SipResponse:
    headers = draw(core_headers(draw(tokens)))
    reason = draw(line_text.map(lambda v: v.strip(" \t")))
    return SipResponse(draw(st.integers(100, 699)), reason, headers, draw(st.binary(max_size=64)))


messages = st.one_of(requests(), responses())
