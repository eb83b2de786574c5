"""Bookinfo as seen from outside: which reviews version answered, and logging in as a user.

Facts from Bookinfo's productpage (Istio 1.10.6, run for real with its pinned Flask 1.0.2):
reviews v1 shows no stars, v2 shows its stars inside `<font color="black">`, v3 inside
`<font color="red">`; without ratings, v2 and v3 show "Ratings service is currently
unavailable" instead; without reviews, "Error fetching product reviews!". Logging in is a form
POST to /login (`username`, `passwd`, any password) that sets Flask's `session` cookie and
answers 302 to the Referer (to /None when there is none); productpage then sends
`end-user: <user>` to reviews, which is what the reviews-test-v2 rule matches on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from html.parser import HTMLParser

import requests

from ci.errors import UserError
from ci.mesh.bookinfo import TITLE

VERSIONS = ("v1", "v2", "v3")
# Not a reviews version: productpage answered, but what it shows cannot be attributed.
UNKNOWN = "unknown"
# productpage could not reach reviews at all.
ERROR = "error"
STAR_COLORS = {"black": "v2", "red": "v3"}
# What the gateway answers when it could not get an answer from productpage at all (no
# connection, or an error status of its own): the request is sent once more, as the mesh's
# retry policy would, and counted. A MOSN gateway in front of productpage, whose HTTP/1.0 server
# closes every connection, answers 502 now and then (5 in about 29,000 requests here): MOSN
# reuses a connection it is closing ("client stream connection wait response error: EOF"),
# where Envoy would not (issue 20).
RETRIED_STATUSES = (0, 502, 503, 504)


class _ReviewMarkup(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.font_colors: list[str | None] = []
        self.star_colors: set[str] = set()
        self.stars_outside_font = 0
        self.reviews = 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "font":
            self.font_colors.append((attributes.get("color") or "").strip().lower())
        elif tag == "blockquote":
            self.reviews += 1
        elif tag == "span" and "glyphicon-star" in (attributes.get("class") or ""):
            colors = [c for c in self.font_colors if c]
            if colors:
                self.star_colors.add(colors[-1])
            else:
                self.stars_outside_font += 1

    def handle_endtag(self, tag):
        if tag == "font" and self.font_colors:
            self.font_colors.pop()


def classify(html: str) -> str:
    """v1, v2 or v3 from productpage's markup; `error` or `unknown` when it cannot be told."""
    if TITLE not in html:
        return UNKNOWN
    lowered = html.lower()
    if "error fetching product reviews" in lowered:
        return ERROR
    markup = _ReviewMarkup()
    markup.feed(html)
    markup.close()
    if markup.stars_outside_font:
        return UNKNOWN
    if markup.star_colors:
        versions = {STAR_COLORS.get(color, UNKNOWN) for color in markup.star_colors}
        return versions.pop() if len(versions) == 1 else UNKNOWN
    # v2 and v3 without their ratings service show a notice instead of stars: not v1.
    if markup.reviews and "ratings service is currently unavailable" not in lowered:
        return "v1"
    return UNKNOWN


@dataclass(frozen=True)
class Sample:
    status: int
    version: str
    seconds: float


class Client:
    """Talks to productpage through the ingress gateway (or a stand-in) at base_url."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.requests = 0
        # The status of each answer that was retried (0: no answer at all).
        self.retried: list[int] = []

    @property
    def productpage(self) -> str:
        return f"{self.base_url}/productpage"

    def session(self, user: str | None = None) -> requests.Session:
        """A fresh session; logged in as `user` when given (the session cookie is then set)."""
        http = requests.Session()
        if user is None:
            return http
        # productpage answers the login with redirect(request.referrer): without a Referer it
        # points at /None, a 404 for a client that follows it; send one as a browser does.
        login = f"{self.base_url}/login"
        try:
            response = http.post(
                login,
                data={"username": user, "passwd": "password"},
                headers={"Referer": self.productpage},
                allow_redirects=False,
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise UserError(
                f"logging in to Bookinfo as {user!r} failed: POST {login} raised "
                f"{type(exc).__name__}; check that the ingress gateway answers"
            ) from None
        if response.status_code not in (200, 302, 303) or "session" not in http.cookies:
            raise UserError(
                f"logging in to Bookinfo as {user!r} failed: POST /login answered "
                f"{response.status_code} without a session cookie; check productpage's logs"
            )
        return http

    def sample(self, http: requests.Session) -> Sample:
        first = self._get(http)
        if first.status not in RETRIED_STATUSES:
            return first
        self.retried.append(first.status)
        return self._get(http)

    def _get(self, http: requests.Session) -> Sample:
        self.requests += 1
        started = time.monotonic()
        try:
            response = http.get(self.productpage, timeout=self.timeout)
        except requests.RequestException:
            return Sample(0, ERROR, time.monotonic() - started)
        seconds = time.monotonic() - started
        version = classify(response.text) if response.status_code == 200 else ERROR
        return Sample(response.status_code, version, seconds)

    def count(self, http: requests.Session, n: int) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _ in range(n):
            version = self.sample(http).version
            counts[version] = counts.get(version, 0) + 1
        return counts
