"""The exception hierarchy; every message is written for the user to act on."""

from __future__ import annotations


class ComfyFleetError(Exception):
    """Base of every error ComfyFleet reports to a user."""


class ConfigError(ComfyFleetError):
    """A config value is invalid. `field` names it the way the user wrote it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class ConfigFileError(ComfyFleetError):
    """A config file could not be read or written."""


class SecretStoreError(ComfyFleetError):
    """The system keyring cannot store or return a secret."""
