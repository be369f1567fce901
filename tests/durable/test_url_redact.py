"""redact_url: no credential of a store URL reaches a log line, an error or output."""

from __future__ import annotations

import pytest

from duetime.durable import open_store

# redact_url is private: these are its unit tests (every message shows URLs through it).
from duetime.durable._redact import redact_url

SECRET = "s3cretPW"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cretPW@127.0.0.1:6394/0", "redis://:***@127.0.0.1:6394/0"),
        ("redis://default:s3cretPW@h:6379/0", "redis://default:***@h:6379/0"),
        ("rediss://h:6380/0?password=s3cretPW&db=1", "rediss://h:6380/0?password=***&db=1"),
        ("unix:///run/r.sock?password=s3cretPW", "unix:///run/r.sock?password=***"),
        (
            "redis://h/0?Pass%77ord=s3cretPW;access_token=s3cretPW",
            "redis://h/0?Pass%77ord=***;access_token=***",
        ),
        ("redis://h/0?secret=s3cretPW&auth=s3cretPW", "redis://h/0?secret=***&auth=***"),
        ("redis+sentinel://u:s3cretPW@h:26379/0", "redis+sentinel://u:***@h:26379/0"),
        ("redis://s3cretPW@h/0", "redis://***@h/0"),
        ("sqlite:///jobs.db", "sqlite:///jobs.db"),
        ("sqlite:////var/lib/app/jobs.db", "sqlite:////var/lib/app/jobs.db"),
        ("memory://", "memory://"),
        ("redis://h:6379/0?db=2", "redis://h:6379/0?db=2"),
        ("jobs.db", "jobs.db"),
    ],
)
def test_redacts_credentials_and_keeps_the_rest(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        # A password with unescaped "/", "?", "#" or "@": everything up to the last "@" hides.
        "redis://:s3c/retPW@h/0",
        "redis://:s3c?retPW@h/0",
        "redis://:s3c#retPW@h/0",
        "redis://u:s3c@retPW@h/0",
        "redis://h/0?password=s3c&retPW",
        "redis://h/0#s3cretPW",
        # Not parseable as scheme://...: hidden whole.
        "redis:/:s3cretPW@h",
        "redis:s3cretPW@h",
        " redis://:s3cretPW@h",
        "red is://:s3cretPW@h",
        "host:6379?password=s3cretPW",
        "",
        "redis://[::1:6379/0?password=s3cretPW",
        "redis://:s3cretPW@h:99999/0",
        "x" * 1000 + "://:s3cretPW@h",
    ],
)
def test_malformed_urls_never_show_the_secret(url: str) -> None:
    shown = redact_url(url)
    assert "s3c" not in shown
    assert "retPW" not in shown
    assert shown.isprintable()


def test_never_raises_and_shows_control_characters_escaped() -> None:
    assert redact_url(None) == "<a NoneType, not a URL>"  # type: ignore[arg-type]
    assert redact_url(b"redis://:s3cretPW@h") == "<a bytes, not a URL>"  # type: ignore[arg-type]
    assert redact_url("sqlite:///a\x1b[31m.db") == "sqlite:///a\\x1b[31m.db"
    assert len(redact_url("redis://h/" + "x" * 10_000)) <= 300


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://u:s3cretPW@127.0.0.1:6394/0",
        "mysql://u:s3cretPW@db/x",
        "sqlite:/:s3cretPW@x",
        "sqlite://:s3cretPW@x",
        "memory://:s3cretPW@x",
    ],
)
def test_open_store_errors_do_not_echo_the_secret(url: str) -> None:
    with pytest.raises(ValueError, match="URL") as info:
        open_store(url)
    assert SECRET not in str(info.value)


def test_unknown_scheme_names_the_scheme_only() -> None:
    with pytest.raises(ValueError, match=r"unknown store URL scheme 'redis\+sentinel://'"):
        open_store("redis+sentinel://u:s3cretPW@127.0.0.1:6394/0")


def test_a_plain_path_is_named_with_a_hint() -> None:
    with pytest.raises(ValueError, match=r"not a store URL: 'jobs.db' .*sqlite:///"):
        open_store("jobs.db")
