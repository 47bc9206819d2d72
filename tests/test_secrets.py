"""Secrets never printed (issue 17, point 7).

``walrelay archive ls kv --s3 "s3://KEY:SECRET@host/b"`` used to quote the address, secret and
all, in its error. Credentials in a URL are refused, and every message quoting a URL is redacted.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from walrelay.archive.s3_store import parse_s3_url
from walrelay.archive.store import ObjectStoreError
from walrelay.redact import redact
from walrelay_chaos.pace import budget

# What a secret key may hold (AWS: letters, digits, '/', '+'; people paste worse), never blank.
secrets = st.text(
    alphabet=st.characters(codec="ascii", categories=("L", "N", "P", "S"), exclude_characters="'\"@"),
    min_size=6,
    max_size=40,
).filter(lambda s: s.strip() == s and not s.isspace())


@given(
    key=st.from_regex(r"[A-Z0-9]{4,20}", fullmatch=True),
    secret=secrets,
    scheme=st.sampled_from(["http", "https", "s3", "ftp"]),
    tail=st.sampled_from(["host/bucket", "127.0.0.1:9000/b/prefix", "h", "host:1/Bad_Bucket"]),
)
def test_an_s3_address_with_credentials_is_refused_without_quoting_them(
    key: str, secret: str, scheme: str, tail: str
) -> None:
    url = f"{scheme}://{key}:{secret}@{tail}"
    with pytest.raises(ObjectStoreError) as info:
        parse_s3_url(url)
    message = str(info.value)
    assert secret not in message and f"{key}:" not in message, message
    assert redact(f"before {url} after") == f"before {scheme}://***@{tail} after"


def test_redact_leaves_urls_without_credentials_alone() -> None:
    text = "listing http://127.0.0.1:9000/bucket/p failed; see https://example.invalid/docs?q=1#x"
    assert redact(text) == text


def test_the_command_line_error_does_not_repeat_the_secret() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    proc = subprocess.run(
        [sys.executable, "-m", "walrelay", "archive", "ls", "kv", "--s3", f"s3://AKIAEXAMPLE:{secret}@host/b"],
        capture_output=True,
        text=True,
        timeout=budget(60),
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2, proc  # a bad --s3 value is a usage error
    assert "put credentials in AWS_ACCESS_KEY_ID" in proc.stderr, proc.stderr
    assert secret not in proc.stderr + proc.stdout and "AKIAEXAMPLE" not in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://[::1/b", "Invalid IPv6 URL"),
        ("http://h:xx/b", "Port could not be cast"),
        ("http://h:99999/bb", "Port out of range"),
    ],
)
def test_a_malformed_s3_address_is_a_clear_error_not_a_traceback(url: str, says: str) -> None:
    with pytest.raises(ObjectStoreError, match=rf"bad S3 address '{url.replace('[', '.')}': {says}"):
        parse_s3_url(url)
