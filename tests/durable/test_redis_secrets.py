"""RedisStore never shows a password: not in a log line, an error (with its
chain) or the repr, whether it is in the user info or a ``?password=`` query."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import pytest

from duetime.durable import RedisStore

# redact_url is private: the tests check what every message shows of a URL.
from duetime.durable._redact import redact_url

from .redis_server import RedisServer, free_port

SECRET = "s3cretPW"


pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("real_time")]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cretPW@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://app:s3cretPW@h/0", "redis://app:***@h/0"),
        ("redis://app:p@s3cretPW@h/0", "redis://app:***@h/0"),  # an unescaped "@"
        ("redis://s3cretPW@h/0", "redis://***@h/0"),  # a user info without ":"
        ("redis://h/0?password=s3cretPW&db=1", "redis://h/0?password=***&db=1"),
        ("redis://h/0?Password=s3cretPW", "redis://h/0?Password=***"),
        ("redis://h/0?password=a&s3cretPW", "redis://h/0?password=***&***"),
        ("rediss://h/0?ssl_ca_certs=/ca.pem", "rediss://h/0?ssl_ca_certs=/ca.pem"),
        (
            "unix:///run/redis.sock?db=0&auth_token=s3cretPW",
            "unix:///run/redis.sock?db=0&auth_token=***",
        ),
        ("redis://h/0#s3cretPW", "redis://h/0#***"),
        ("redis://h/\x1b[31m", "redis://h/\\x1b[31m"),
    ],
)
async def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert SECRET not in redact_url(url)


async def test_a_bad_scheme_does_not_echo_the_password() -> None:
    with pytest.raises(ValueError, match="starts with") as caught:
        RedisStore(f"http://app:{SECRET}@127.0.0.1/0")
    assert SECRET not in str(caught.value)


def everything(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


async def test_no_password_in_logs_errors_or_repr(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    extra = ("--requirepass", SECRET, "--maxmemory-policy", "allkeys-lru")
    with RedisServer(tmp_path, extra=extra) as server, caplog.at_level(logging.DEBUG):
        port = server.port
        for url in (
            f"redis://:{SECRET}@127.0.0.1:{port}/0",
            f"redis://127.0.0.1:{port}/0?password={SECRET}",
        ):
            store = RedisStore(url)
            assert SECRET not in repr(store)
            async with store:  # the eviction warning names the store
                await store.entries()
        assert "allkeys-lru" in caplog.text
        for url in (
            f"redis://:wrong-{SECRET}@127.0.0.1:{port}/0",
            f"redis://127.0.0.1:{port}/0?password=wrong-{SECRET}",
            f"redis://:{SECRET}@127.0.0.1:{free_port()}/0",  # nothing listens there
        ):
            with pytest.raises(ConnectionError, match="cannot open") as caught:
                async with RedisStore(url, connect_timeout=5):
                    pass
            assert SECRET not in everything(caught.value)
            assert "***" in str(caught.value)
    assert SECRET not in caplog.text
