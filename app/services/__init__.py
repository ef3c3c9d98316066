"""Asyncio and file I/O services. No Qt."""
