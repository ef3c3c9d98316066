from __future__ import annotations

from pathlib import Path

import keyring.backends.fail
import pytest

from app.core.errors import SecretStoreError
from app.services.secrets import SecretStore
from tests.fakes.memory_keyring import MemoryKeyring
from tests.integration.cli_helpers import comfy_fleet


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


def test_keyrings_that_keep_nothing_safe_are_refused() -> None:
    import keyring.backends.chainer
    import keyring.backends.null

    from app.services.secrets import is_safe

    assert not is_safe(keyring.backends.fail.Keyring())
    assert not is_safe(keyring.backends.null.Keyring())
    assert not is_safe(keyring.backends.chainer.ChainerBackend())  # chains nothing here
    assert not MemoryKeyring.viable  # keyring's discovery never picks the test backend


def test_without_a_system_keyring_a_token_is_refused_not_lost(tmp_path: Path) -> None:
    """On this machine (and CI) there is no Secret Service: keyring would fall back to
    whatever viable backend was imported; the command must refuse instead of 'storing'."""
    cfg = tmp_path / "fleet.json"
    added = comfy_fleet(
        "tunnel", "add", "studio", "--hostname", "studio.example.invalid", config=cfg
    )
    assert added.returncode == 0, added.stderr
    done = comfy_fleet("tunnel", "set-token", "studio", config=cfg, input_text="s3cret\n")
    assert done.returncode == 1, done.stdout
    assert "No system keyring is available" in done.stderr and "Stored" not in done.stdout
    assert "s3cret" not in done.stdout + done.stderr + cfg.read_text()
