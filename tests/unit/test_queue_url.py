"""Where the fleet queue is kept: the URL's rules (no I/O)."""

from __future__ import annotations

import pytest

from app.core.config import AppSettings, FleetConfig, validate_config
from app.core.errors import ConfigError
from app.core.queue_url import QueueUrlError, check_queue_url, chosen_queue_url, shown_url

URL = "postgresql://ana@127.0.0.1:5432/fleet"


def test_the_flag_wins_then_the_environment_then_the_setting() -> None:
    other = URL.replace("fleet", "other")
    assert chosen_queue_url(URL, other, other) == URL
    assert chosen_queue_url(None, URL, other) == URL
    assert chosen_queue_url(None, None, URL) == URL
    assert chosen_queue_url(None, None, None) is None
    assert chosen_queue_url("", URL, URL) is None  # an empty flag: the local file, whatever else
    assert chosen_queue_url(None, "", URL) is None


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("mysql://ana@127.0.0.1/fleet", "is not a postgresql://… URL"),
        ("127.0.0.1:5432", "is not a postgresql://… URL"),
        ("postgresql://ana@127.0.0.1:port/fleet", "port of"),
        ("postgresql://ana:s3cret@127.0.0.1/fleet", "~/.pgpass"),
        ("postgresql://ana@127.0.0.1/fleet?password=s3cret", "~/.pgpass"),
    ],
)
def test_a_url_that_cannot_be_used_is_said_without_its_password(url: str, said: str) -> None:
    with pytest.raises(QueueUrlError, match=said.replace(".", r"\.").replace("?", r"\?")) as caught:
        check_queue_url(url, "--queue-url")
    assert "s3cret" not in str(caught.value)


def test_the_environment_may_hold_a_password_but_it_is_never_shown() -> None:
    url = "postgresql://ana:s3cret@127.0.0.1:5432/fleet?password=x&sslmode=require"
    assert check_queue_url(url, "env", password_allowed=True) == url
    assert shown_url(url) == "postgresql://ana@127.0.0.1:5432/fleet?password=***&sslmode=require"
    assert shown_url(URL) == URL


def test_the_setting_is_checked_with_the_rest_of_the_config() -> None:
    validate_config(FleetConfig(app=AppSettings(queue_url=URL)))
    with pytest.raises(ConfigError, match="app.queue_url"):
        validate_config(FleetConfig(app=AppSettings(queue_url=URL.replace("ana@", "ana:pw@"))))
