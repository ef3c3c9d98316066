from __future__ import annotations

import keyring.backends.fail
import pytest

from app.core.errors import SecretStoreError
from app.services.secrets import MemoryKeyring, SecretStore


def test_store_get_delete_with_memory_backend() -> None:
    store = SecretStore(backend=MemoryKeyring())
    assert store.get("tunnel:studio") is None
    store.set("tunnel:studio", "s3cret")
    assert store.get("tunnel:studio") == "s3cret"
    assert store.delete("tunnel:studio") is True
    assert store.delete("tunnel:studio") is False
    assert store.get("tunnel:studio") is None


def test_no_keyring_gives_a_clear_error_and_no_fallback() -> None:
    store = SecretStore(backend=keyring.backends.fail.Keyring())
    with pytest.raises(SecretStoreError, match="No system keyring") as error:
        store.set("tunnel:studio", "s3cret")
    assert "s3cret" not in str(error.value)
    with pytest.raises(SecretStoreError, match="plain-text"):
        store.get("tunnel:studio")


def test_empty_secret_is_refused() -> None:
    with pytest.raises(SecretStoreError):
        SecretStore(backend=MemoryKeyring()).set("x", "")
