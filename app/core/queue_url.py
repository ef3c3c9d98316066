"""Where the fleet queue is kept: the local SQLite file, or a PostgreSQL server given by URL."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from app.core.errors import ComfyFleetError

SCHEMES = ("postgresql", "postgres")
QUEUE_URL_ENV = "COMFY_FLEET_QUEUE_URL"


class QueueUrlError(ComfyFleetError):
    """A queue URL that cannot be used as given; the sentence says why."""


def check_queue_url(url: str, where: str, password_allowed: bool = False) -> str:
    """`url` when it is a PostgreSQL URL; `where` names where it was given. A password in it
    is refused unless `password_allowed` (the environment): settings files and command lines
    are no place for one; libpq reads ~/.pgpass, PGPASSFILE and PGPASSWORD itself."""
    parts = urlsplit(url.strip())
    if parts.scheme not in SCHEMES:
        raise QueueUrlError(f"{where}: {shown_url(url)!r} is not a postgresql://… URL")
    try:
        parts.port  # noqa: B018 (a port that is no number raises here)
    except ValueError:
        raise QueueUrlError(f"{where}: the port of {shown_url(url)!r} is not a number") from None
    has_password = parts.password is not None or "password" in parse_qs(parts.query)
    if has_password and not password_allowed:
        raise QueueUrlError(
            f"{where}: the URL holds a password, which would be kept in plain text there:"
            " put it in ~/.pgpass (or PGPASSFILE / PGPASSWORD) and leave it out of the URL"
        )
    return url.strip()


def shown_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None and "password" not in parts.query:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    query = "&".join(
        f"{k}={'***' if k == 'password' else v}"
        for k, vs in parse_qs(parts.query).items()
        for v in vs
    )
    return f"{parts.scheme}://{user}{host}{parts.path}" + (f"?{query}" if query else "")


def chosen_queue_url(flag: str | None, env: str | None, setting: str | None) -> str | None:
    """`--queue-url` first, then COMFY_FLEET_QUEUE_URL, then the settings' app.queue_url;
    None: the local SQLite queue. An empty value means the local queue too."""
    if flag is not None:
        return check_queue_url(flag, "--queue-url") if flag.strip() else None
    if env is not None:
        return check_queue_url(env, QUEUE_URL_ENV, password_allowed=True) if env.strip() else None
    return check_queue_url(setting, "app.queue_url") if setting else None
