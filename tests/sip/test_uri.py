"""URIs (RFC 3261 §19.1, §25.1; RFC 3966; RFC 5118, RFC 5954) and name-addr values (§20.10)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipagent.sip.errors import LocalProtocolError, RemoteProtocolError
from sipagent.sip.uri import (
    CONTACT_STAR,
    AbsoluteUri,
    NameAddress,
    SipUri,
    parse_any_uri,
    parse_name_addr,
    parse_uri,
)
from tests.sip._strategies import absolute_uris, name_addresses, sip_uris, tel_uris

pytestmark = pytest.mark.unit


def test_parse_full_sip_uri() -> None:
    uri = parse_uri("sips:alice:secret@Atlanta.example.com:5061;transport=tcp;lr?subject=project%20x&priority=urgent")
    assert uri == SipUri(
        "sips",
        "alice",
        "secret",
        "Atlanta.example.com",
        5061,
        (("transport", "tcp"), ("lr", None)),
        (("subject", "project x"), ("priority", "urgent")),
    )
    assert uri.param("Transport") == "tcp"
    assert uri.has_param("LR") and uri.param("lr") is None
    assert uri.host_port == "Atlanta.example.com:5061"


def test_scheme_is_case_insensitive_and_stored_lower() -> None:
    assert parse_uri("SIP:bob@example.com").scheme == "sip"


def test_ipv6_host_is_stored_without_brackets_and_written_with_them() -> None:
    uri = parse_uri("sip:[2001:db8::10]:5070")
    assert (uri.host, uri.port) == ("2001:db8::10", 5070)
    assert str(uri) == "sip:[2001:db8::10]:5070"
    assert uri.host_port == "[2001:db8::10]:5070"
    assert SipUri(host="[::1]").host == "::1"  # brackets given by a caller are dropped too


def test_rfc5118_port_inside_brackets_belongs_to_the_address() -> None:
    # RFC 5118 §4.3: the ':5070' is the last group of the address, not a port.
    uri = parse_uri("sip:[2001:db8::10:5070]")
    assert (uri.host, uri.port) == ("2001:db8::10:5070", None)


def test_rfc5118_three_colon_reference_is_tolerated_as_its_rfc4291_spelling() -> None:
    # RFC 5118 §4.10: the RFC 3261 ABNF admits ':::' before an embedded IPv4 address; tolerate it.
    assert parse_uri("sip:user@[2001:db8:::192.0.2.1]").host == "2001:db8::192.0.2.1"
    with pytest.raises(RemoteProtocolError):
        parse_uri("sip:user@[2001:db8:::10]")  # ':::' anywhere else is no address at all


@pytest.mark.parametrize(
    ("text", "user", "params"),
    [
        # RFC 4475 §3.1.1.3: unescaping happens once; "%25%34%31" is "%41", never "A".
        (
            "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31",
            "caller",
            (("lr", None), ("name", "value%41")),
        ),
        # RFC 4475 §3.1.1.4: escaped NULs are ordinary user characters.
        ("sip:null-%00-null@example.com", "null-\x00-null", ()),
        # RFC 4475 §3.1.1.9: ';' and an escaped '@' inside the user part.
        ("sip:user;par=u%40example.net@example.com", "user;par=u@example.net", ()),
        ("sip:sips%3Auser%40example.com@example.net", "sips:user@example.com", ()),
    ],
)
def test_escapes_are_resolved_once(text: str, user: str, params: tuple[tuple[str, str | None], ...]) -> None:
    uri = parse_uri(text)
    assert (uri.user, uri.params) == (user, params)
    assert parse_uri(str(uri)) == uri


def test_serialising_escapes_what_a_component_cannot_carry() -> None:
    uri = SipUri(user="I have spaces", host="example.net", params=(("name", "value%41"),))
    assert str(uri) == "sip:I%20have%20spaces@example.net;name=value%2541"
    assert str(SipUri(user="a@b", host="h", headers=(("Route", "<sip:x>"),))) == "sip:a%40b@h?Route=%3Csip:x%3E"


def test_rfc4475_unusual_user_and_password() -> None:
    # RFC 4475 §3.1.1.2: every one of these characters is legal in the user part or the password.
    uri = parse_uri(
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com"
    )
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"


def test_tel_uri() -> None:
    uri = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert (uri.scheme, uri.user, uri.host, uri.params) == (
        "tel",
        "+1-201-555-0123",
        "",
        (("phone-context", "example.com"),),
    )
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"
    # RFC 3966 §4: visual separators are ignored when comparing.
    assert uri.equivalent(parse_uri("tel:+1(201)5550123;PHONE-CONTEXT=Example.com"))
    assert not uri.equivalent(parse_uri("tel:+1-201-555-0124;phone-context=example.com"))


def test_unsupported_schemes() -> None:
    # §8.2.2.1 / RFC 4475 §3.3.2: a Request-URI of an unknown scheme gets 416.
    with pytest.raises(RemoteProtocolError) as caught:
        parse_uri("nobodyKnowsThisScheme:totallyopaquecontent")
    assert caught.value.status_hint == 416
    # RFC 4475 §3.3.4: header fields must still carry such URIs.
    assert parse_any_uri("http://www.example.com") == AbsoluteUri("http", "//www.example.com")
    assert parse_any_uri("soap.beep://192.0.2.103:3002").scheme == "soap.beep"


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "sip:user@",
        "sip:@example.com",
        "sip:2001:db8::10",  # RFC 5118 §4.2: an IPv6 address needs brackets
        "sip:example.com:99999",
        "sip:example.com:5o60",
        "sip:[2001:db8::1",
        "sip:[not-an-address]",
        "sip:192.0.2.300",
        "sip:example.com;;lr",
        "sip:exa mple.com",
        "sip:us er@example.com",
        "sip:example.com?novalue",
        "sip:user@example.com;n%ZZ=1",
        "<sip:user@example.com>",  # RFC 4475 §3.1.2.7
        "sip:user@example.com; lr",  # RFC 4475 §3.1.2.8
        "example.com",
        "tel:",
        "mailto:",
    ],
)
def test_malformed_uris_are_400(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_any_uri(text)
    assert caught.value.status_hint == 400


def test_uri_edge_cases() -> None:
    with pytest.raises(RemoteProtocolError, match="whitespace"):
        parse_uri("sip:host :5060")
    with pytest.raises(RemoteProtocolError, match="password"):
        parse_uri("sip:user:pass word@host")
    with pytest.raises(RemoteProtocolError, match="invalid value"):
        parse_uri("sip:host;maddr=a<b")
    with pytest.raises(RemoteProtocolError):
        parse_uri("sip:[fe80::1%eth0]")  # zone identifiers are not part of the SIP grammar
    assert SipUri("SIPS", host="example.com").scheme == "sips"
    assert parse_uri("sip:host;lr").has_param("LR")
    assert parse_uri("sip:host;x=").param("x") == ""


@pytest.mark.parametrize(
    "fields",
    [
        {"host": ""},
        {"scheme": "http", "host": "example.com"},
        {"host": "bad host"},
        {"host": "example.com", "port": 70000},
        {"user": "", "host": "example.com"},
        {"password": "x", "host": "example.com"},
        {"scheme": "tel", "host": "example.com"},
    ],
)
def test_constructor_refuses_what_cannot_be_written(fields: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        SipUri(**fields)


# RFC 3261 §19.1.4, the examples listed as equivalent and as not equivalent.
EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
    # RFC 5954 §3: IP addresses compare by value, not by text.
    ("sip:[2001:db8::9:1]", "sip:[2001:DB8:0:0:0:0:9:1]"),
    ("sip:[::ffff:192.0.2.2]", "sip:[0:0:0:0:0:ffff:c000:202]"),
]
NOT_EQUIVALENT = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
    ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
    ("sip:alice@atlanta.com", "sip:alice@atlanta.com;maddr=192.0.2.1"),
    ("sip:alice@atlanta.com", "sip:alice@atlanta.com;user=phone"),
    # RFC 4475 §3.1.1.4: one escaped NUL is not two.
    ("sip:%00@host5.example.com", "sip:%00%00@host5.example.com"),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_equivalent_uris(a: str, b: str) -> None:
    assert parse_uri(a).equivalent(parse_uri(b))
    assert parse_uri(b).equivalent(parse_uri(a))


@pytest.mark.parametrize(("a", "b"), NOT_EQUIVALENT)
def test_uris_that_are_not_equivalent(a: str, b: str) -> None:
    assert not parse_uri(a).equivalent(parse_uri(b))
    assert not parse_uri(b).equivalent(parse_uri(a))


def test_absolute_uri_equivalence() -> None:
    assert AbsoluteUri("HTTP", "//x").equivalent(AbsoluteUri("http", "//x"))
    assert not AbsoluteUri("http", "//x").equivalent(parse_uri("sip:x"))
    assert not parse_uri("sip:x").equivalent(AbsoluteUri("http", "//x"))


def test_with_and_without_param() -> None:
    uri = parse_uri("sip:alice@example.com;transport=udp")
    assert str(uri.with_param("lr")) == "sip:alice@example.com;transport=udp;lr"
    assert str(uri.with_param("TRANSPORT", "tcp")) == "sip:alice@example.com;transport=tcp"  # keeps its spelling
    assert str(uri.without_param("Transport")) == "sip:alice@example.com"


# ---- name-addr (§20.10) ----


def test_quoted_display_name_with_escapes() -> None:
    # RFC 4475 §3.1.1.1: "J Rosenberg \\\"" is the display name 'J Rosenberg \"'.
    value = parse_name_addr('"J Rosenberg \\\\\\""       <sip:jdrosen@example.com>\t;\t tag = 98asjd8', header="From")
    assert value.display_name == 'J Rosenberg \\"'
    assert value.uri == SipUri(user="jdrosen", host="example.com")
    assert value.tag == "98asjd8"


def test_token_display_names() -> None:
    # RFC 4475 §3.1.1.2 (several tokens) and §3.1.1.6 (no whitespace before '<').
    value = parse_name_addr("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;tag=_token~1'+`*%!-.")
    assert value.display_name == "token1~` token2'+_ token3*%!.-"
    assert value.tag == "_token~1'+`*%!-."
    assert parse_name_addr("caller<sip:caller@example.com>;tag=323").display_name == "caller"


def test_addr_spec_parameters_belong_to_the_header() -> None:
    # §20.10 and RFC 4475 §3.3.12-13: the same text means a header parameter outside <> and a URI one inside.
    outside = parse_name_addr("sip:+19725552222@gw1.example.net;unknownparam", header="Contact")
    inside = parse_name_addr("<sip:+19725552222@gw1.example.net;unknownparam>", header="Contact")
    assert outside.params == (("unknownparam", None),) and outside.uri.params == ()  # type: ignore[union-attr]
    assert inside.params == () and inside.uri.params == (("unknownparam", None),)  # type: ignore[union-attr]


def test_uri_headers_need_angle_brackets() -> None:
    # RFC 4475 §3.3.14 accepts the escaped Route inside <>; §3.1.2.13 rejects it bare.
    value = parse_name_addr("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>", header="Contact")
    assert value.uri.headers == (("Route", "<sip:sip.example.com>"),)  # type: ignore[union-attr]
    with pytest.raises(RemoteProtocolError):
        parse_name_addr("sip:user@example.com?Route=%3Csip:sip.example.com%3E", header="Contact")


def test_other_schemes_in_name_addr() -> None:
    # RFC 4475 §3.3.4.
    assert parse_name_addr("isbn:2983792873").uri == AbsoluteUri("isbn", "2983792873")
    assert parse_name_addr("<name:John_Smith>").uri == AbsoluteUri("name", "John_Smith")


def test_contact_star() -> None:
    assert parse_name_addr(" * ", allow_star=True) is CONTACT_STAR
    assert CONTACT_STAR.is_star and str(CONTACT_STAR) == "*"
    with pytest.raises(RemoteProtocolError):
        parse_name_addr("*")


def test_spaces_inside_angle_brackets_are_tolerated() -> None:
    # RFC 4475 §3.1.2.14 allows a liberal receiver to ignore them.
    assert parse_name_addr('"Watson, Thomas" < sip:t.watson@example.org >').uri == SipUri(
        user="t.watson", host="example.org"
    )


@pytest.mark.parametrize(
    "text",
    [
        '"Mr. J. User <sip:j.user@example.com>',  # RFC 4475 §3.1.2.6: unterminated quote
        "Bell, Alexander <sip:a.g.bell@example.com>",  # RFC 4475 §3.1.2.15: unquoted non-token
        '"Joe" <sip:joe@example.org>;;;;',  # RFC 4475 §3.1.2.1: empty parameters
        "<sip:joe@example.org",
        '"Joe" sip:joe@example.org',
        "<sip:joe@example.org>;tag=",
        "<sip:joe@example.org> junk",
        "",
    ],
)
def test_malformed_name_addr(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_name_addr(text, header="To")


def test_name_addr_serialisation() -> None:
    value = NameAddress('A "quoted" \\ name', SipUri(user="bob", host="example.com"), (("tag", "abc"),))
    assert str(value) == '"A \\"quoted\\" \\\\ name" <sip:bob@example.com>;tag=abc'
    assert str(value.with_tag("xyz")) == '"A \\"quoted\\" \\\\ name" <sip:bob@example.com>;tag=xyz'
    assert str(value.without_param("tag")) == '"A \\"quoted\\" \\\\ name" <sip:bob@example.com>'
    assert value.has_param("TAG") and not value.without_param("tag").has_param("tag")
    with pytest.raises(LocalProtocolError):
        value.with_tag("not a token")


# ---- properties ----


@settings(max_examples=200, deadline=None)
@given(st.one_of(sip_uris(), tel_uris))
def test_uri_round_trip(uri: SipUri) -> None:
    assert parse_uri(str(uri)) == uri
    assert uri.equivalent(uri)


@given(absolute_uris)
def test_absolute_uri_round_trip(uri: AbsoluteUri) -> None:
    assert parse_any_uri(str(uri)) == uri


@settings(max_examples=200, deadline=None)
@given(name_addresses())
def test_name_addr_round_trip(value: NameAddress) -> None:
    assert parse_name_addr(str(value)) == value


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60) | st.text(alphabet='sip:@[]<>;?=%&" \t\\,*.0123456789abcdef', max_size=60))
def test_any_text_parses_or_raises_remote_protocol_error(text: str) -> None:
    for parse in (parse_any_uri, parse_name_addr):
        try:
            value = parse(text)
        except RemoteProtocolError:
            continue
        assert parse(str(value)) == value  # whatever we accept, we can write back
