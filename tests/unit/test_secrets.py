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


def test_secrets_handed_over_without_a_keyring(tmp_path: Path) -> None:
    """A headless service: the environment variable the ecosystem uses, or the service
    manager's credential file (which wins); the keyring is not needed, and nothing is written."""
    no_keyring = keyring.backends.fail.Keyring()
    environ = {"RUNPOD_API_KEY": " rp_env \n", "TUNNEL_TOKEN": "tok", "HF_TOKEN": "hf_x"}
    store = SecretStore(backend=no_keyring, environ=environ)
    assert store.get("cloud/runpod") == "rp_env"
    assert store.source("cloud/runpod") == "environment variable RUNPOD_API_KEY"
    assert store.get("tunnel:studio") == "tok"  # cloudflared's own variable, any named tunnel
    assert store.get("download/huggingface") == "hf_x"
    assert store.source("download/civitai") == "not set (the keyring cannot be read here)"
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "RUNPOD_API_KEY").write_text("rp_file\n")
    handed = SecretStore(
        backend=no_keyring, environ={**environ, "CREDENTIALS_DIRECTORY": str(credentials)}
    )
    assert handed.get("cloud/runpod") == "rp_file"
    assert handed.source("cloud/runpod") == "service credential RUNPOD_API_KEY"
    assert handed.get("tunnel:studio") == "tok"  # no file for it: the environment's
    with pytest.raises(SecretStoreError):
        handed.set("cloud/runpod", "rp_new")  # still only ever the keyring, never a file
    assert (credentials / "RUNPOD_API_KEY").read_text() == "rp_file\n"
    assert sorted(p.name for p in credentials.iterdir()) == ["RUNPOD_API_KEY"]


def test_the_keyring_serves_what_is_not_handed_over() -> None:
    backend = MemoryKeyring()
    store = SecretStore(backend=backend, environ={})
    store.set("cloud/runpod", "rp_kept")
    assert (store.get("cloud/runpod"), store.source("cloud/runpod")) == ("rp_kept", "keyring")
    assert store.source("tunnel:studio") == "not set"
    assert store.source("some/other") == "not set"  # (no outside name: keyring only)
    overridden = SecretStore(backend=backend, environ={"RUNPOD_API_KEY": "rp_env"})
    assert overridden.get("cloud/runpod") == "rp_env"  # the service's own wins while set
