"""Secrets live in the system keyring; never in files, logs or command lines. Where there is no
desktop keyring (a headless service, a container), a secret may be handed over read-only by the
service manager (a credential file) or in its environment variable (app.core.secret_sources)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import keyring
import keyring.errors
from keyring.backend import KeyringBackend
from keyring.compat import properties

from app import APP_ID
from app.core.errors import SecretStoreError
from app.core.secret_sources import CREDENTIALS_DIRECTORY, outside_name

_UNAVAILABLE = (
    keyring.errors.NoKeyringError,
    keyring.errors.KeyringLocked,
    keyring.errors.InitError,
)


class SecretStore:
    """A thin wrapper over keyring with errors a user can act on."""

    def __init__(
        self,
        service: str = APP_ID,
        backend: KeyringBackend | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._service = service
        self._backend = backend
        self._environ = os.environ if environ is None else environ

    def _keyring(self) -> KeyringBackend:
        """The given backend, else the system's; one that keeps nothing safe is refused."""
        if self._backend is not None:
            return self._backend
        chosen = keyring.get_keyring()
        if not is_safe(chosen):
            raise SecretStoreError(_explain(keyring.errors.NoKeyringError()))
        return chosen

    def get(self, name: str) -> str | None:
        """The service manager's credential, else the environment variable, else the keyring."""
        handed = self._handed_over(name)
        if handed is not None:
            return handed[1]
        try:
            return self._keyring().get_password(self._service, name)
        except _UNAVAILABLE as exc:
            raise SecretStoreError(_explain(exc)) from None

    def source(self, name: str) -> str:
        """Where `get` finds it, in words (never the secret itself)."""
        handed = self._handed_over(name)
        if handed is not None:
            return handed[0]
        try:
            stored = self._keyring().get_password(self._service, name)
        except (SecretStoreError, *_UNAVAILABLE):
            return "not set (the keyring cannot be read here)"
        return "keyring" if stored else "not set"

    def _handed_over(self, name: str) -> tuple[str, str] | None:
        variable = outside_name(name)
        if variable is None:
            return None
        folder = self._environ.get(CREDENTIALS_DIRECTORY)
        if folder:
            try:
                text = (Path(folder) / variable).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                text = ""  # (none handed over under this name)
            if text:
                return f"service credential {variable}", text
        value = self._environ.get(variable, "").strip()
        return (f"environment variable {variable}", value) if value else None

    def set(self, name: str, secret: str) -> None:
        if not secret:
            raise SecretStoreError("An empty secret cannot be stored.")
        try:
            self._keyring().set_password(self._service, name, secret)
        except _UNAVAILABLE as exc:
            raise SecretStoreError(_explain(exc)) from None
        except keyring.errors.PasswordSetError as exc:
            raise SecretStoreError(f"The keyring refused to store the secret: {exc}") from None

    def delete(self, name: str) -> bool:
        """Remove a secret; False when there was none."""
        try:
            self._keyring().delete_password(self._service, name)
        except keyring.errors.PasswordDeleteError:
            return False
        except _UNAVAILABLE as exc:
            raise SecretStoreError(_explain(exc)) from None
        return True


# Backends keyring may pick that keep no secret safely: none at all, or a plain file.
UNSAFE_MODULES = ("keyring.backends.fail", "keyring.backends.null", "keyrings.alt")


def is_safe(backend: KeyringBackend) -> bool:
    """A system keyring (Secret Service, KWallet, macOS Keychain, Windows Credential Locker);
    a chainer is safe when any backend it chains is."""
    inner = getattr(backend, "backends", None)
    if inner is not None:
        return any(is_safe(b) for b in inner)
    return not type(backend).__module__.startswith(UNSAFE_MODULES)


def _explain(exc: Exception) -> str:
    if isinstance(exc, keyring.errors.KeyringLocked):
        return "The system keyring is locked: unlock it and try again."
    return (
        "No system keyring is available, so the secret cannot be stored safely. "
        "Install and start a Secret Service (GNOME Keyring or KWallet) and try again; "
        "ComfyFleet never falls back to a plain-text file."
    )


class MemoryKeyring(KeyringBackend):
    """Secrets kept in this process's memory only: for the demo's simulated Runpod key and for
    tests, handed to SecretStore explicitly; keyring's own discovery never picks it (its
    priority refuses), so a real secret never lands here."""

    @properties.classproperty
    def priority(cls) -> float:
        raise RuntimeError("the in-memory keyring is handed over explicitly")

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self._secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self._secrets.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError(username)
