"""Where a secret may come from besides the keyring, for a machine without a desktop session (a
headless service, a container): the environment variable the ecosystem already uses for it, or
a file the service manager hands over (systemd's `LoadCredential=`, in $CREDENTIALS_DIRECTORY,
named like that variable). Both are read-only: the app never writes either."""

from __future__ import annotations

from app.core.model_script import TOKEN_KEY
from app.core.tunnel import token_key

RUNPOD_KEY = "cloud/runpod"  # the keyring entry of the Runpod API key
OUTSIDE_NAMES = {
    RUNPOD_KEY: "RUNPOD_API_KEY",  # Runpod's own CLI and SDK read this
    TOKEN_KEY.format(site="huggingface"): "HF_TOKEN",  # huggingface_hub's
    TOKEN_KEY.format(site="civitai"): "CIVITAI_TOKEN",
}
TUNNEL_TOKEN = "TUNNEL_TOKEN"  # cloudflared's own: `cloudflared tunnel run` reads it
CREDENTIALS_DIRECTORY = "CREDENTIALS_DIRECTORY"


def outside_name(secret: str) -> str | None:
    """The environment variable (and credential file) that may supply `secret`."""
    if secret.startswith(token_key("")):
        return TUNNEL_TOKEN  # (cloudflared runs one tunnel per token: any named tunnel's)
    return OUTSIDE_NAMES.get(secret)
