"""The in-memory keyring the tests hand to SecretStore (the app's own, for the demo)."""

from app.services.secrets import MemoryKeyring

__all__ = ["MemoryKeyring"]
