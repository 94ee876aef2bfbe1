"""FEATUREBUS_S3_PUBLIC_ENDPOINT: presigned URLs handed to users are signed for the public name of
the store, while the services keep talking to its internal endpoint.

SigV4 signs the Host header, so a URL is signed for the host the user's client will send; the
signature is checked here independently of the S3 client (the AWS algorithm, by hand), and on
the test stack's S3 server, which must accept the URL on the public name and refuse a URL signed
for the internal name and rewritten afterwards.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import httpx
import pytest
from pydantic import ValidationError

from featurebus.common.objectstore import ObjectStore
from featurebus.common.settings import CommonSettings

SECRET = "test-secret-key"


def _settings(**overrides: Any) -> CommonSettings:
    return CommonSettings(
        s3_endpoint="minio:9000", s3_access_key="fb", s3_secret_key=SECRET, s3_bucket="featurebus", **overrides
    )


def sigv4_valid(url: str, method: str, secret: str, host: str | None = None) -> bool:
    """Whether ``url``'s query-string SigV4 signature is right for a request to ``host`` (default:
    the URL's own host, which is what an HTTP client sends), computed as AWS documents it."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    signature = query.pop("X-Amz-Signature")
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-SignedHeaders"] == "host"
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()))
    host = host or parts.netloc
    canonical = "\n".join([method, parts.path, canonical_query, f"host:{host}", "", "host", "UNSIGNED-PAYLOAD"])
    _, date, region, service, _ = query["X-Amz-Credential"].split("/")
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", query["X-Amz-Date"], scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), signature)


async def test_without_a_public_endpoint_urls_name_the_internal_one() -> None:
    store = ObjectStore(_settings())
    url = await store.presigned_put("uploads/a.zip", timedelta(minutes=5))
    assert urlsplit(url)[:2] == ("http", "minio:9000")
    assert sigv4_valid(url, "PUT", SECRET)
    await store.close()


@pytest.mark.parametrize(
    ("public", "secure", "scheme", "host"),
    [
        ("s3.example.com:9000", False, "http", "s3.example.com:9000"),
        ("s3.example.com:9443", True, "https", "s3.example.com:9443"),
        ("https://s3.example.com", False, "https", "s3.example.com"),
        ("http://127.0.0.1:9000/", True, "http", "127.0.0.1:9000"),
    ],
)
async def test_presigned_urls_are_signed_for_the_public_endpoint(
    public: str, secure: bool, scheme: str, host: str
) -> None:
    """No connection is made (the unit tests' network guard would fail it): signing is local."""
    store = ObjectStore(_settings(s3_public_endpoint=public, s3_secure=secure))
    url = await store.presigned_put("uploads/blobs/x y.bin", timedelta(minutes=5))
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == (scheme, host)
    assert parts.path == "/featurebus/uploads/blobs/x%20y.bin"
    assert sigv4_valid(url, "PUT", SECRET), "the signature holds for the host the client sends"
    assert not sigv4_valid(url, "PUT", SECRET, host="minio:9000"), "and for no other host"
    assert "minio" not in url
    # The services' own requests still go to the internal endpoint.
    assert store._client._base_url.host == "minio:9000"  # type: ignore[attr-defined]
    await store.close()


def test_the_public_endpoint_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATUREBUS_S3_ENDPOINT", "minio:9000")
    monkeypatch.setenv("FEATUREBUS_S3_PUBLIC_ENDPOINT", "https://s3.example.com")
    assert CommonSettings().public_s3() == ("s3.example.com", True)
    monkeypatch.setenv("FEATUREBUS_S3_PUBLIC_ENDPOINT", "")
    assert CommonSettings().public_s3() == ("minio:9000", False)


@pytest.mark.parametrize("bad", ["https://s3.example.com/bucket", "s3.example.com/x", "ftp://s3", "https://u:p@s3"])
def test_a_malformed_public_endpoint_fails_at_start(bad: str) -> None:
    with pytest.raises(ValidationError, match="FEATUREBUS_S3_PUBLIC_ENDPOINT"):
        _settings(s3_public_endpoint=bad)


@pytest.mark.integration
async def test_the_s3_server_accepts_the_url_on_the_public_name_and_refuses_a_rewritten_one(
    local_stack: Any,
) -> None:
    """The test stack's S3 (SeaweedFS, or MinIO with FEATUREBUS_TEST_STACK=containers) is reached
    internally as 127.0.0.1:PORT and publicly as localhost:PORT: two names, one store."""
    env = local_stack.env()
    internal = env["FEATUREBUS_S3_ENDPOINT"]
    public = "localhost:" + internal.rsplit(":", 1)[1]
    base = {
        "s3_endpoint": internal,
        "s3_access_key": env["FEATUREBUS_S3_ACCESS_KEY"],
        "s3_secret_key": env["FEATUREBUS_S3_SECRET_KEY"],
        "s3_bucket": env["FEATUREBUS_S3_BUCKET"],
    }
    store = ObjectStore(CommonSettings(**base, s3_public_endpoint=public))
    plain = ObjectStore(CommonSettings(**base))
    try:
        await store.ensure_bucket()
        key = f"public-endpoint/{uuid.uuid4().hex}.bin"
        url = await store.presigned_put(key, timedelta(minutes=5))
        assert urlsplit(url).netloc == public
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await http.put(url, content=b"bytes from a user")
            assert answer.status_code == 200, answer.text
            assert await store.get_bytes(store.uri(key)) == b"bytes from a user"

            # Signed for the internal name, then pointed at the public one: the Host differs.
            signed = urlsplit(await plain.presigned_put(f"{key}.rewritten", timedelta(minutes=5)))
            rewritten = urlunsplit(signed._replace(netloc=public))
            refused = await http.put(rewritten, content=b"x")
            assert refused.status_code == 403, refused.text
            assert await store.size(f"{key}.rewritten") is None
        await store.delete(key)
    finally:
        await store.close()
        await plain.close()
