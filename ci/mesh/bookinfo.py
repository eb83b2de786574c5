"""Bookinfo's productpage and reviews as stand-ins that answer as the real ones do.

The mesh check needs the applications behind the proxies, and Bookinfo's own images cannot run
here. So productpage is a real HTTP server that renders the real page from what reviews
answered, keeps the logged-in user in Flask's signed `session` cookie and sends it to reviews
as `end-user` (the header the reviews-test-v2 rule matches), calling reviews by name through
its sidecar as the real one does; each reviews stand-in answers GET /reviews/<id> with the
JSON its version answers. What tells the versions apart (no stars, black stars, red stars) is
then MOSN's routing, not the stand-in's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

# The productpage stand-in answers as the real one did: Bookinfo's productpage from Istio 1.10.6
# (fd053c6165d21105d66dac6e3d0649db2dde5b86, 2021-11-24), its pinned requirements (Flask 1.0.2,
# Werkzeug 0.15.5) on Python 3.7, run on 2026-12-01 against stand-in details, reviews (v1, v2,
# v3, down) and ratings (up, down). Compared there: the page's non-blank lines, stripped, from
# <nav> to </nav> and from <div class="container-fluid"> to its end are the ones below (the login
# modal, a commented-out navbar, styles and scripts, which nothing here reads, are left out);
# the session cookie is Flask's signed cookie under Bookinfo's secret key, byte for byte
# (`sign` with the real cookie's timestamp gave the real value); /login and /logout answer
# 302 to the Referer, or to /None without one, as Werkzeug 0.15 does.
# The reviews JSON is LibertyRestEndpoint.getJsonResponse at that commit (read 2026-12-04):
# v1 without ratings, v2 with STAR_COLOR black, v3 red; the stars are the ratings service's
# (Reviewer1 5, Reviewer2 4). productpage asks GET http://reviews:9080/reviews/0 with a 3 s
# timeout, twice before it gives up, forwarding `end-user` and the tracing headers.
TITLE = "<title>Simple Bookstore App</title>"
BOOKINFO_SECRET_KEY = b'_5#y2L"F4Q8z\n\xec]/'
REVIEWS = (
    (
        "Reviewer1",
        5,
        "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
    ),
    (
        "Reviewer2",
        4,
        "Absolutely fun and entertaining. The play lacks thematic depth when compared to other"
        " plays by Shakespeare.",
    ),
)
SUMMARY = (
    '<a href="https://en.wikipedia.org/wiki/The_Comedy_of_Errors">Wikipedia Summary</a>: The'
    " Comedy of Errors is one of <b>William Shakespeare's</b> early plays. It is his shortest"
    " and one of his most farcical comedies, with a major part of the humour coming from"
    " slapstick and mistaken identity, in addition to puns and word play."
)
DETAILS = (
    ("Type", "paperback"),
    ("Pages", "200"),
    ("Publisher", "PublisherA"),
    ("Language", "English"),
    ("ISBN-10", "1234567890"),
    ("ISBN-13", "123-1234567890"),
)
STAR_COLOR = {"v2": "black", "v3": "red"}
RATINGS_DOWN = "Ratings service is currently unavailable"
REVIEWS_DOWN = "Sorry, product reviews are currently unavailable for this book."
# productpage.py's getForwardHeaders: what it passes on to reviews besides `end-user`.
FORWARDED = (
    "x-request-id",
    "x-ot-span-context",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "traceparent",
    "tracestate",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "user-agent",
)
REVIEWS_TIMEOUT = 3.0
REVIEWS_TRIES = 2


def reviews_body(version: str, ratings: bool = True) -> dict:
    """What reviews `version` (v1, v2, v3) answers productpage; v2/v3 with ratings down too."""
    color = STAR_COLOR.get(version)
    reviews = []
    for reviewer, rating, text in REVIEWS:
        review: dict = {"reviewer": reviewer, "text": text}
        if color:
            review["rating"] = (
                {"stars": rating, "color": color} if ratings else {"error": RATINGS_DOWN}
            )
        reviews.append(review)
    return {"id": "0", "reviews": reviews}


def stars(color: str, filled: int) -> str:
    full = '          <span class="glyphicon glyphicon-star"></span>\n' * filled
    empty = '          <span class="glyphicon glyphicon-star-empty"></span>\n' * (5 - filled)
    return (
        f'        <font color="{color}">\n          <!-- full stars: -->\n{full}'
        f"          <!-- empty stars: -->\n{empty}        </font>\n"
    )


def _reviews_column(status: int, body: dict) -> str:
    """productpage.html's reviews column for what reviews answered."""
    if status != 200:
        return (
            '      <h4 class="text-center text-primary">Error fetching product reviews!</h4>\n'
            f"      <p>{body.get('error', '')}</p>\n"
        )
    blocks = []
    for review in body.get("reviews", []):
        rating = review.get("rating") or {}
        if rating.get("stars"):
            rating_html = stars(rating.get("color", ""), int(rating["stars"]))
        elif rating.get("error"):
            rating_html = f"        <p><i>{rating['error']}</i></p>\n"
        else:
            rating_html = ""
        blocks.append(
            f"      <blockquote>\n        <p>{review.get('text', '')}</p>\n"
            f"        <small>{review.get('reviewer', '')}</small>\n{rating_html}      </blockquote>\n"
        )
    return '      <h4 class="text-center text-primary">Book Reviews</h4>\n' + "".join(blocks)


def page(reviews_status: int, reviews: dict, user: str | None = None) -> str:
    """productpage as the real one renders what reviews answered (status and JSON body)."""
    if user:
        sign_in = (
            '    <p class="navbar-text navbar-right">\n'
            '      <i class="glyphicon glyphicon-user" aria-hidden="true"></i>\n'
            f'      <span style="padding-left: 5px;">{user} ( <a href="logout">sign out</a> )</span>\n'
            "    </p>\n"
        )
    else:
        sign_in = (
            '    <button type="button" class="btn btn-default navbar-btn navbar-right"'
            ' data-toggle="modal" href="#login-modal">Sign\n      in</button>\n'
        )
    details = "".join(f"        <dt>{key}:</dt>{value}\n" for key, value in DETAILS)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        f"    {TITLE}\n"
        '<meta charset="utf-8">\n  </head>\n  <body>\n'
        '<nav class="navbar navbar-inverse navbar-static-top">\n  <div class="container">\n'
        '    <div class="navbar-header">\n'
        '      <a class="navbar-brand" href="#">BookInfo Sample</a>\n    </div>\n'
        f"{sign_in}  </div>\n</nav>\n"
        '<div class="container-fluid">\n  <div class="row">\n    <div class="col-md-12">\n'
        '      <h3 class="text-center text-primary">The Comedy of Errors</h3>\n'
        f"      <p>Summary: {SUMMARY}</p>\n    </div>\n  </div>\n"
        '  <div class="row">\n    <div class="col-md-6">\n'
        '      <h4 class="text-center text-primary">Book Details</h4>\n'
        f"      <dl>\n{details}      </dl>\n    </div>\n"
        f'    <div class="col-md-6">\n{_reviews_column(reviews_status, reviews)}    </div>\n'
        "  </div>\n</div>\n"
        "  </body>\n</html>\n"
    )


# ---- Flask's session cookie under Bookinfo's key ------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signature(value: str) -> str:
    # Flask's session: itsdangerous, salt "cookie-session", HMAC-SHA1 key derivation.
    key = hmac.new(BOOKINFO_SECRET_KEY, b"cookie-session", hashlib.sha1).digest()
    return _b64(hmac.new(key, value.encode(), hashlib.sha1).digest())


def sign(user: str, timestamp: int | None = None) -> str:
    """Flask's session cookie value for {"user": user}: payload.timestamp.signature."""
    stamp = int(time.time()) if timestamp is None else timestamp
    payload = _b64(json.dumps({"user": user}, separators=(",", ":")).encode())
    value = f"{payload}.{_b64(stamp.to_bytes(4, 'big'))}"
    return f"{value}.{_signature(value)}"


def user_from(cookie_header: str | None) -> str | None:
    """The user a session cookie names, None without a cookie or with a forged one."""
    if not cookie_header:
        return None
    cookie = SimpleCookie(cookie_header)
    if "session" not in cookie:
        return None
    value, _, signature = cookie["session"].value.rpartition(".")
    if not hmac.compare_digest(signature, _signature(value)):
        return None
    payload = value.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["user"]


# ---- the servers ----------------------------------------------------------------------------


class Productpage:
    """productpage's own behaviour; where reviews' answer comes from is `reviews`' business."""

    def reviews(self, end_user: str | None, headers: dict[str, str]) -> tuple[int, dict]:
        raise NotImplementedError


class MeshProductpage(Productpage):
    """Calls reviews by name through its sidecar: `http://reviews:PORT/reviews/0` sent to the
    sidecar's outbound listener on 127.0.0.1:PORT (interception mode NONE: no iptables)."""

    def __init__(self, reviews_port: int) -> None:
        self.reviews_port = reviews_port

    def reviews(self, end_user: str | None, headers: dict[str, str]) -> tuple[int, dict]:
        sent = {k: v for k, v in headers.items() if k.lower() in FORWARDED}
        if end_user:
            sent["end-user"] = end_user
        sent["Host"] = f"reviews:{self.reviews_port}"
        status = 500
        for _ in range(REVIEWS_TRIES):
            # A new connection per call, as productpage's requests.get makes; http.client
            # because no proxy setting of the environment may stand between it and its sidecar.
            connection = http.client.HTTPConnection(
                "127.0.0.1", self.reviews_port, timeout=REVIEWS_TIMEOUT
            )
            try:
                connection.request("GET", "/reviews/0", headers=sent)
                response = connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException):
                continue
            finally:
                connection.close()
            if response.status == 200:
                try:
                    return 200, json.loads(body)
                except ValueError:
                    continue
            status = response.status
        return status, {"error": REVIEWS_DOWN}


def productpage_handler(app: Productpage) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # Head and body go out as two writes: with Nagle on, the body waits for the peer's
        # delayed ACK (40 ms a request on Linux).
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def _send(self, status: int, body: str = "", headers: dict | None = None):
            data = body.encode()
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _back(self, cookie: str) -> None:
            # redirect(request.referrer): Werkzeug 0.15 makes None the path /None.
            target = self.headers.get("Referer") or f"http://{self.headers.get('Host')}/None"
            self._send(302, headers={"Location": target, "Set-Cookie": cookie})

        def do_GET(self):
            if self.path == "/productpage":
                user = user_from(self.headers.get("Cookie"))
                status, body = app.reviews(user, dict(self.headers.items()))
                self._send(200, page(status, body, user))
            elif self.path == "/logout":
                self._back("session=; Expires=Thu, 01-Jan-1970 00:00:00 GMT; Max-Age=0; Path=/")
            else:
                self._send(404, "not routed by the gateway")

        def do_POST(self):
            if self.path != "/login":
                self._send(404)
                return
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            user = (form.get("username") or [""])[0]
            self._back(f"session={sign(user)}; HttpOnly; Path=/")

    return Handler


def reviews_handler(version: str) -> type[BaseHTTPRequestHandler]:
    body = json.dumps(reviews_body(version)).encode()

    class Handler(BaseHTTPRequestHandler):
        # Liberty keeps connections open; so does this stand-in.
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def do_GET(self):
            found = self.path.startswith("/reviews/")
            data = body if found else b'{"error": "not found"}'
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], host: str, port: int) -> Iterator[int]:
    """Serve `handler` on host:port (0: a free port) in a thread; yield the port."""
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
