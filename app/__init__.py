"""ComfyFleet: the control room for a ComfyUI-Distributed fleet."""

__version__ = "0.1.0"
APP_NAME = "ComfyFleet"
APP_ID = "comfy-fleet"
