"""The signing algorithm reproduces EdgeGallery's published token-request sample exactly."""

from __future__ import annotations

from datetime import UTC, datetime

from mep_kubeedge_adapter.mep import signing

AK = "QVUJMSUMgS0VZLS0tLS0"
SK = "DXPb4sqElKhcHe07Kw5uorayETwId1JOjjOIRomRs5wyszoCR5R7AtVa28KT3lSc"
HOST = "119.8.47.5:30443"
DATE = "20210302T195133Z"
HEADERS = {"content-type": "application/json", "host": HOST, "x-sdk-date": DATE}


def test_canonical_request_matches_vector() -> None:
    canonical = signing.canonical_request("POST", "/mep/token", (), HEADERS)
    assert canonical == (
        "POST\n/mep/token/\n\ncontent-type:application/json\nhost:119.8.47.5:30443\n"
        "x-sdk-date:20210302T195133Z\n\ncontent-type;host;x-sdk-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    to_sign = signing.string_to_sign(DATE, canonical)
    assert to_sign.split("\n")[2] == (
        "a2b341d4c9a3ad0ca06f250560bc9a7fb0c95ee7fc8f3e433d6f4c538b3531f0"
    )
    assert signing.signature(SK, to_sign) == (
        "b726e5f20b4a1520efb455a60127bfe076c2917b51cecb8fddd49ba1d37019b8"
    )


def test_token_request_headers_match_vector() -> None:
    now = datetime(2021, 3, 2, 19, 51, 33, tzinfo=UTC)
    headers = signing.token_request_headers(AK, SK, HOST, now=now)
    assert headers == {
        "Host": HOST,
        "Content-Type": "application/json",
        "X-Sdk-Date": DATE,
        "Authorization": (
            "SDK-HMAC-SHA256 Access=QVUJMSUMgS0VZLS0tLS0, "
            "SignedHeaders=content-type;host;x-sdk-date, "
            "Signature=b726e5f20b4a1520efb455a60127bfe076c2917b51cecb8fddd49ba1d37019b8"
        ),
    }


def test_canonical_uri_escapes_like_go_query_escape() -> None:
    assert signing.canonical_uri("/") == "/"
    assert signing.canonical_uri("/a//./b c/../d~e/") == "/a/b+c/d~e/"
    assert signing.canonical_uri("/x/ü:") == "/x/%C3%BC%3A/"


def test_canonical_query_sorts_escaped_pairs() -> None:
    assert signing.canonical_query([("b", "2"), ("a", "x y"), ("a", "1")]) == "a=1&a=x+y&b=2"
    assert signing.canonical_query() == ""


def test_canonical_headers_sort_and_join_values() -> None:
    block, names = signing.canonical_headers({"X-B": [" 2", "1 "], "a": " v "})
    assert block == "a:v\nx-b:1,2\n"
    assert names == "a;x-b"


def test_sdk_date_is_utc() -> None:
    assert signing.sdk_date(datetime(2021, 3, 2, 19, 51, 33, tzinfo=UTC)) == DATE
