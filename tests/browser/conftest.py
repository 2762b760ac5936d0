"""Headless Chromium for the browser tests (Debian's chromium, never a download)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator

import pytest

CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    return shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    playwright_api = pytest.importorskip("playwright.async_api")
    executable = chromium_path()
    if not os.access(executable, os.X_OK):
        pytest.skip(f"no Chromium executable at {executable}")
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def prompting_browser() -> AsyncIterator[object]:
    """Chromium that asks before opening devices, as a real one does: a context's
    ``permissions`` say which the user allowed; the others are refused."""
    playwright_api = pytest.importorskip("playwright.async_api")
    executable = chromium_path()
    if not os.access(executable, os.X_OK):
        pytest.skip(f"no Chromium executable at {executable}")
    args = [arg for arg in CHROMIUM_ARGS if arg != "--use-fake-ui-for-media-stream"]
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=args)
        try:
            yield browser
        finally:
            await browser.close()
