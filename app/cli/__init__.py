"""Headless commands: parse, call a use case, print."""
