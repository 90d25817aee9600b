"""Header policy and Helicone header parsing, without sockets."""

from __future__ import annotations

import time
import uuid

import pytest
from multidict import CIMultiDict

from proxy.errors import HeaderError
from proxy.gateway.headers import (
    MAX_PROPERTY_BYTES,
    REDACTED,
    TRUNCATED,
    client_response_headers,
    is_valid_request_id,
    loggable_headers,
    new_request_id,
    parse_helicone,
    redact_query,
    scan_headers,
    truncate_utf8,
    upstream_request_headers,
    warning_header,
    with_upstream_key,
)


def headers(**items: str) -> CIMultiDict[str]:
    return CIMultiDict((k.replace("_", "-"), v) for k, v in items.items())


def test_absent_request_id_gets_a_fresh_uuid() -> None:
    first = parse_helicone(headers()).request_id
    second = parse_helicone(headers()).request_id
    assert first != second and len(first) == 36


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("ticket-42-1700000000", True),
        ("A", True),
        ("9" * 128, True),
        ("9" * 129, False),
        ("", False),
        (".dot-first", False),
        ("a/b", False),
        ("a b", False),
        ("mail@host:80", True),
    ],
)
def test_request_id_alphabet(value: str, valid: bool) -> None:
    assert is_valid_request_id(value) is valid


def test_properties_are_lowercased_and_values_verbatim() -> None:
    parsed = parse_helicone(
        headers(Helicone_Property_Prompt_Version="V2 Draft", helicone_property_ENV="Prod")
    )
    assert parsed.properties == {"prompt-version": "V2 Draft", "env": "Prod"}


def test_flags_and_session_fields() -> None:
    parsed = parse_helicone(
        headers(
            Helicone_Omit_Request="TRUE",
            Helicone_Omit_Response="false",
            Helicone_Stream_Usage="1",
            Helicone_Session_Id="s1",
            Helicone_Session_Path="parent/child",
            Helicone_User_Id="u1",
        )
    )
    assert (parsed.omit_request, parsed.omit_response, parsed.stream_usage) == (True, False, True)
    assert parsed.session_path == "/parent/child"
    assert (parsed.session_id, parsed.user_id) == ("s1", "u1")


def test_empty_property_name_is_ignored_with_a_warning_or_refused_when_strict() -> None:
    parsed = parse_helicone(headers(Helicone_Property_="x", Helicone_Property_App="chat"))
    assert parsed.properties == {"app": "chat"}
    assert parsed.warnings == ["Helicone-Property- needs a name after the prefix; ignored"]
    with pytest.raises(HeaderError):
        parse_helicone(headers(Helicone_Property_="x"), strict=True)


def test_over_long_values_are_truncated_with_a_marker() -> None:
    parsed = parse_helicone(
        headers(Helicone_Property_Note="ab" * 600, Helicone_Session_Name="n" * 1500)
    )
    note = parsed.properties["note"]
    assert note.endswith(TRUNCATED) and len(note.encode()) == MAX_PROPERTY_BYTES
    assert note.startswith("abab")
    assert parsed.session_name is not None and len(parsed.session_name) == 1024
    assert [w.split(" is ")[0] for w in parsed.warnings] == [
        "Helicone-Property-Note",
        "helicone-session-name",
    ]


def test_truncation_never_splits_a_character() -> None:
    cut = truncate_utf8("€" * 400, MAX_PROPERTY_BYTES)
    assert cut.endswith(TRUNCATED) and len(cut.encode()) <= MAX_PROPERTY_BYTES
    assert set(cut.removesuffix(TRUNCATED)) == {"€"}


def test_an_unusable_request_id_is_replaced_and_the_warning_names_it() -> None:
    parsed = parse_helicone(headers(Helicone_Request_Id="a b/c"))
    assert len(parsed.request_id) == 36
    assert "'a b/c'" in parsed.warnings[0] and parsed.request_id in parsed.warnings[0]
    with pytest.raises(HeaderError, match="Helicone-Request-Id"):
        parse_helicone(headers(Helicone_Request_Id="a b/c"), strict=True)


def test_warning_header_is_ascii_and_bounded() -> None:
    value = warning_header(["café \r\n"] + ["x" * 100] * 50)
    assert value.isascii() and "\r" not in value.replace("\\r", "")
    assert len(value) <= 2048 and value.endswith(TRUNCATED)


def test_upstream_headers_drop_helicone_hop_by_hop_and_recomputed() -> None:
    out = upstream_request_headers(
        headers(
            Host="relaylog:8787",
            Connection="keep-alive",
            Content_Length="12",
            Helicone_Auth="Bearer pk",
            Helicone_User_Id="u",
            Accept_Encoding="gzip, br",
            OpenAI_Organization="org-1",
        ),
        upstream_key="sk-up",
    )
    assert out == {
        "OpenAI-Organization": "org-1",
        "Authorization": "Bearer sk-up",
        "Accept-Encoding": "identity",
    }


def test_client_authorization_wins_over_configured_key() -> None:
    out = upstream_request_headers(headers(authorization="Bearer mine"), upstream_key="sk-up")
    assert out["authorization"] == "Bearer mine"
    assert "Authorization" not in out


def test_response_headers_keep_rate_limit_and_drop_hop_by_hop() -> None:
    out = client_response_headers(
        headers(
            Transfer_Encoding="chunked",
            Content_Length="10",
            Connection="close",
            x_ratelimit_remaining_requests="99",
            Retry_After="3",
        )
    )
    assert out == {"x-ratelimit-remaining-requests": "99", "Retry-After": "3"}


def test_loggable_headers_never_contain_credentials() -> None:
    out = loggable_headers(
        headers(
            Authorization="Bearer sk",
            Helicone_Auth="Bearer pk",
            api_key="k",
            Cookie="c",
            X_Api_Key="k2",
            User_Agent="OpenAI/Python",
        )
    )
    assert out == {"user-agent": "OpenAI/Python"}


def test_stored_headers_are_an_allowlist_other_values_are_redacted() -> None:
    """A gateway's key can ride in any header: only known headers keep their value."""
    sent = {
        "Ocp-Apim-Subscription-Key": "azure-apim",
        "X-Auth-Token": "tok",
        "cf-aig-authorization": "Bearer cf",
        "x-portkey-api-key": "pk",
        "x-amz-security-token": "amz",
        "Helicone-Posthog-Key": "phc",
        "Referer": "https://app.example/?token=t",
        "User-Agent": "OpenAI/Python 1.50.0",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "OpenAI-Organization": "org-1",
        "OpenAI-Project": "proj-1",
        "X-Stainless-Lang": "python",
        "X-Stainless-Retry-Count": "0",
        "Helicone-Session-Id": "s-1",
        "Helicone-Property-App": "chat",
        "Helicone-Cache-Enabled": "true",
        "Authorization": "Bearer sk",
    }
    stored = loggable_headers(CIMultiDict(sent))
    redacted = {
        "ocp-apim-subscription-key",
        "x-auth-token",
        "cf-aig-authorization",
        "x-portkey-api-key",
        "x-amz-security-token",
        "helicone-posthog-key",
        "referer",
    }
    assert {name for name, value in stored.items() if value == REDACTED} == redacted
    kept = {k.lower(): v for k, v in sent.items() if k.lower() not in redacted}
    del kept["authorization"]
    assert {name: value for name, value in stored.items() if value != REDACTED} == kept


@pytest.mark.parametrize(
    ("query", "stored"),
    [
        ("", ""),
        ("api-version=2024-06-01", "api-version=2024-06-01"),
        ("api-version=1&api-key=sk", f"api-version=1&api-key={REDACTED}"),
        ("key=AIza&alt=sse", f"key={REDACTED}&alt=sse"),
        (
            "access_token=a&Token=b&sig=c",
            f"access_token={REDACTED}&Token={REDACTED}&sig={REDACTED}",
        ),
        (
            "signature=s&password=p&client_secret=c",
            "&".join(f"{n}={REDACTED}" for n in ("signature", "password", "client_secret")),
        ),
        (
            "X-Amz-Security-Token=t&x-goog-signature=g",
            f"X-Amz-Security-Token={REDACTED}&x-goog-signature={REDACTED}",
        ),
        ("api%2Dkey=sk&q=a%20b", f"api%2Dkey={REDACTED}&q=a%20b"),
        ("token&keys=1&monkey=2", "token&keys=1&monkey=2"),
    ],
)
def test_credential_query_parameters_are_redacted(query: str, stored: str) -> None:
    assert redact_query(query) == stored


def test_helicone_header_that_is_not_utf8_is_repaired_or_refused_when_strict() -> None:
    raw = b"caf\xe9".decode("utf-8", "surrogateescape")
    parsed = parse_helicone(headers(Helicone_Property_Name=raw, Helicone_User_Id=raw))
    assert parsed.properties == {"name": "caf\ufffd"} and parsed.user_id == "caf\ufffd"
    assert len(parsed.warnings) == 2 and all("not valid UTF-8" in w for w in parsed.warnings)
    with pytest.raises(HeaderError, match="not valid UTF-8"):
        parse_helicone(headers(Helicone_Property_Name=raw), strict=True)
    with pytest.raises(HeaderError, match="not valid UTF-8"):
        parse_helicone(headers(Helicone_User_Id=raw), strict=True)


def test_new_request_ids_are_time_ordered_uuids() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_request_id() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before <= parsed.int >> 80 <= after  # the first 48 bits: Unix milliseconds
    # Drawn in order, they sort in order to the millisecond.
    stamps = [uuid.UUID(t).int >> 80 for t in ids]
    assert stamps == sorted(stamps)


def test_one_scan_matches_each_header_policy() -> None:
    raw = CIMultiDict(
        [
            ("Host", "relaylog:8787"),
            ("Authorization", "Bearer sk-client"),
            ("Content-Type", "application/json"),
            ("Connection", "keep-alive"),
            ("Helicone-User-Id", "first"),
            ("helicone-user-id", "second"),
            ("Helicone-Property-Env", "prod"),
            ("Helicone-Auth", "Bearer rk"),
            ("X-Trace", "t1"),
        ]
    )
    scanned = scan_headers(raw)
    assert scanned.logged == {
        "host": "relaylog:8787",
        "content-type": "application/json",
        "connection": "keep-alive",
        "helicone-user-id": "second",
        "helicone-property-env": "prod",
        "x-trace": REDACTED,
    }
    assert scanned.upstream == {
        "Authorization": "Bearer sk-client",
        "Content-Type": "application/json",
        "X-Trace": "t1",
    }
    # The first of repeated Helicone headers counts, as a case-insensitive lookup gives it.
    assert scanned.helicone["helicone-user-id"] == "first"
    assert parse_helicone(raw).user_id == "first"
    assert scanned.properties == [("Helicone-Property-Env", "prod")]
    assert scanned.has_authorization
    # The client's own key is kept; the configured one is added only when it sent none.
    assert with_upstream_key(scanned, "sk-up")["Authorization"] == "Bearer sk-client"
    bare = scan_headers(CIMultiDict([("Content-Type", "application/json")]))
    assert with_upstream_key(bare, "sk-up")["Authorization"] == "Bearer sk-up"
    assert with_upstream_key(bare, None) == {
        "Content-Type": "application/json",
        "Accept-Encoding": "identity",
    }
