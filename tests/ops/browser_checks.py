"""Chromium pages that record every Content-Security-Policy violation they meet."""

from __future__ import annotations

from typing import Any

MEDIA_TIMEOUT_MS = 30_000

# Runs before any page script (Playwright injects it outside the page's CSP).
RECORD_VIOLATIONS_JS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(
    `${event.violatedDirective} blocked ${event.blockedURI || "inline"} `
    + `at ${event.sourceFile}:${event.lineNumber}`);
});
"""

REMOTE_VIDEO_PLAYING_JS = """
() => {
  const status = document.querySelector('[role="status"]');
  if (status && status.dataset.kind === "error") {
    throw new Error(`status line shows an error: ${status.textContent}`);
  }
  return [...document.querySelectorAll("video[data-participant-id]")]
    .some((video) => video.videoWidth > 0);
}
"""


class WatchedPage:
    """A page in its own context; ``violations()`` lists CSP reports from console and DOM."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.console: list[str] = []
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda err: self.console.append(f"pageerror: {err}"))

    @classmethod
    async def open(cls, browser: Any, **context_options: Any) -> WatchedPage:
        context = await browser.new_context(locale="fr-FR", **context_options)
        await context.add_init_script(RECORD_VIOLATIONS_JS)
        return cls(await context.new_page())

    async def violations(self) -> list[str]:
        found = [line for line in self.console if "Content Security Policy" in line
                 or "Content-Security-Policy" in line]
        try:
            found += await self.page.evaluate("window.__cspViolations || []")
        except Exception as exc:  # the page navigated away mid-evaluation
            found.append(f"could not read violations: {exc}")
        return found

    async def join(self, base_url: str, room: str, name: str) -> None:
        await self.page.goto(f"{base_url}/?room={room}")
        await self.page.get_by_label("Votre nom").fill(name)
        await self.page.get_by_role("button", name="Rejoindre").click()
        await self.page.get_by_role("button", name="Quitter").wait_for()

    async def wait_for_remote_video(self) -> None:
        await self.page.wait_for_function(REMOTE_VIDEO_PLAYING_JS, timeout=MEDIA_TIMEOUT_MS)

    async def close(self) -> None:
        await self.page.context.close()
