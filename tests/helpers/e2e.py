"""Stand-ins for what only a live cluster has: Bookinfo's productpage and the CLI tools.

Nothing here pretends to be tested: these are the counterparts the e2e tests talk to in place
of a kind cluster, which cannot run on this machine. The productpage stand-in is a real HTTP
server on 127.0.0.1 that renders the markup and the /login + session cookie + end-user
semantics described in MISSION.md; its routing follows the rule last "applied" through the
stand-in kubectl.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import threading
import time
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs

from tests.helpers.net import serving

TITLE = "<title>Simple Bookstore App</title>"


# The productpage stand-in answers as the real one did: Bookinfo's productpage from Istio 1.10.6
# (fd053c6165d21105d66dac6e3d0649db2dde5b86, 2021-11-24), its pinned requirements (Flask 1.0.2,
# Werkzeug 0.15.5) on Python 3.7, run on 2026-12-01 against stand-in details, reviews (v1, v2,
# v3, down) and ratings (up, down). Compared there: the page's non-blank lines, stripped, from
# <nav> to </nav> and from <div class="container-fluid"> to its end are the ones below (the login
# modal, a commented-out navbar, styles and scripts, which nothing here reads, are left out);
# the session cookie is Flask's signed cookie under Bookinfo's secret key, byte for byte
# (`sign` with the real cookie's timestamp gave the real value); /login and /logout answer
# 302 to the Referer, or to /None without one, as Werkzeug 0.15 does.
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


def stars(color: str, filled: int) -> str:
    full = '          <span class="glyphicon glyphicon-star"></span>\n' * filled
    empty = '          <span class="glyphicon glyphicon-star-empty"></span>\n' * (5 - filled)
    return (
        f'        <font color="{color}">\n          <!-- full stars: -->\n{full}'
        f"          <!-- empty stars: -->\n{empty}        </font>\n"
    )


def _reviews_column(version: str) -> str:
    if version == "error":
        return (
            '      <h4 class="text-center text-primary">Error fetching product reviews!</h4>\n'
            "      <p>Sorry, product reviews are currently unavailable for this book.</p>\n"
        )
    color = {"v2": "black", "v3": "red", "ratings-down": "red"}.get(version)
    blocks = []
    for reviewer, rating, text in REVIEWS:
        if version == "ratings-down":
            rating_html = "        <p><i>Ratings service is currently unavailable</i></p>\n"
        else:
            rating_html = stars(color, rating) if color else ""
        blocks.append(
            f"      <blockquote>\n        <p>{text}</p>\n        <small>{reviewer}</small>\n"
            f"{rating_html}      </blockquote>\n"
        )
    return '      <h4 class="text-center text-primary">Book Reviews</h4>\n' + "".join(blocks)


def productpage_html(version: str, user: str | None = None) -> str:
    """productpage as the real one renders each reviews version: v1, v2, v3, error (reviews
    unreachable) or ratings-down (v2/v3 without ratings)."""
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
        f'    <div class="col-md-6">\n{_reviews_column(version)}    </div>\n  </div>\n</div>\n'
        "  </body>\n</html>\n"
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class ProductpageStandIn:
    """Routing modes: none (v1, v2, v3 in turn), all-v1, 50-v3, 80-v3, test-v2."""

    def __init__(self, mode_file: Path | None = None, mode: str = "none", seed: int = 7) -> None:
        self.mode_file = mode_file
        self._mode = mode
        self.rng = random.Random(seed)
        self.turn = 0
        self.lock = threading.Lock()
        self.end_users: list[str | None] = []

    @property
    def mode(self) -> str:
        if self.mode_file is not None and self.mode_file.exists():
            return self.mode_file.read_text().strip()
        return self._mode

    @staticmethod
    def _signature(value: str) -> str:
        # Flask's session: itsdangerous, salt "cookie-session", HMAC-SHA1 key derivation.
        key = hmac.new(BOOKINFO_SECRET_KEY, b"cookie-session", hashlib.sha1).digest()
        return _b64(hmac.new(key, value.encode(), hashlib.sha1).digest())

    def sign(self, user: str, timestamp: int | None = None) -> str:
        """Flask's session cookie value for {"user": user}: payload.timestamp.signature."""
        stamp = int(time.time()) if timestamp is None else timestamp
        payload = _b64(json.dumps({"user": user}, separators=(",", ":")).encode())
        value = f"{payload}.{_b64(stamp.to_bytes(4, 'big'))}"
        return f"{value}.{self._signature(value)}"

    def user_from(self, cookie_header: str | None) -> str | None:
        if not cookie_header:
            return None
        cookie = SimpleCookie(cookie_header)
        if "session" not in cookie:
            return None
        value, _, signature = cookie["session"].value.rpartition(".")
        if not hmac.compare_digest(signature, self._signature(value)):
            return None
        payload = value.split(".")[0]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["user"]

    def route(self, end_user: str | None) -> str:
        """What reviews version the mesh would pick for a request carrying `end-user`."""
        with self.lock:
            self.end_users.append(end_user)
            mode = self.mode
            if mode == "none":
                self.turn += 1
                return ("v1", "v2", "v3")[self.turn % 3]
            if mode == "all-v1":
                return "v1"
            if mode in ("50-v3", "80-v3"):
                share = 0.5 if mode == "50-v3" else 0.8
                return "v3" if self.rng.random() < share else "v1"
            if mode == "test-v2":
                return "v2" if end_user == "jason" else "v1"
            return "error"


def _handler(app: ProductpageStandIn):
    class Handler(BaseHTTPRequestHandler):
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
                user = app.user_from(self.headers.get("Cookie"))
                # productpage forwards the logged-in user to reviews as `end-user`.
                self._send(200, productpage_html(app.route(user), user))
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
            self._back(f"session={app.sign(user)}; HttpOnly; Path=/")

    return Handler


def productpage_server(app: ProductpageStandIn, port: int = 0):
    """The productpage stand-in on 127.0.0.1; a context manager yielding its base URL."""
    return serving(_handler(app), port)


def _deployment(name: str, app_env: str, sidecar: str) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels:
    app: {name.rsplit("-", 1)[0]}
spec:
  replicas: 1
  template:
    metadata:
      annotations:
        sidecar.istio.io/status: '{{"initContainers":["istio-init"],"containers":["istio-proxy"]}}'
      creationTimestamp: null
    spec:
      serviceAccountName: bookinfo
      containers:
      - name: {name.rsplit("-", 1)[0]}
        image: docker.io/istio/examples-bookinfo-{name}:1.16.2
        ports:
        - containerPort: 9080
{app_env}{sidecar}      initContainers:
      - name: istio-init
        image: docker.io/mosnio/proxyv2:v1.0.0-1.10.6
        args: [istio-iptables, -p, "15001", -z, "15006", -u, "1337"]
status: {{}}
"""


def _sidecar(proxy_config: str | None, args: list[str] | None = None) -> str:
    lines = [
        "      - name: istio-proxy",
        "        image: docker.io/mosnio/proxyv2:v1.0.0-1.10.6",
        "        args: "
        + json.dumps(
            args or ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local"]
        ),
        "        env:",
        "        - name: ISTIO_META_CLUSTER_ID",
        "          value: Kubernetes",
    ]
    if proxy_config is not None:
        lines += ["        - name: PROXY_CONFIG", "          value: |"]
        lines += [f"            {line}" for line in proxy_config.splitlines()]
    return "\n".join(lines) + "\n"


# An `istioctl kube-inject` result shaped like Bookinfo's, with every way a sidecar can name
# its binary: mosn already (details), envoy in JSON (ratings), no binaryPath (reviews-v1),
# envoy in YAML form (reviews-v2), a --binaryPath argument (reviews-v3), no PROXY_CONFIG at
# all plus --binaryPath=envoy (productpage). The details app container carries a PROXY_CONFIG
# naming envoy that is not a sidecar's and must stay untouched.
APP_ENV_NAMING_ENVOY = """        env:
        - name: PROXY_CONFIG
          value: '{"binaryPath":"/usr/local/bin/envoy"}'
"""
INJECTED_BOOKINFO = "\n---\n".join(
    [
        """apiVersion: v1
kind: Service
metadata:
  name: details
spec:
  ports:
  - port: 9080
    name: http
  selector:
    app: details""",
        """apiVersion: v1
kind: ServiceAccount
metadata:
  name: bookinfo""",
        _deployment(
            "details-v1",
            APP_ENV_NAMING_ENVOY,
            _sidecar('{"binaryPath":"/usr/local/bin/mosn","concurrency":2}'),
        ),
        _deployment(
            "ratings-v1", "", _sidecar('{"binaryPath":"/usr/local/bin/envoy","concurrency":2}')
        ),
        _deployment(
            "reviews-v1", "", _sidecar('{"discoveryAddress":"istiod.istio-system.svc:15012"}')
        ),
        _deployment("reviews-v2", "", _sidecar("binaryPath: /usr/local/bin/envoy\nconcurrency: 2")),
        _deployment(
            "reviews-v3",
            "",
            _sidecar(
                '{"binaryPath":"/usr/local/bin/mosn"}',
                ["proxy", "sidecar", "--binaryPath", "/usr/local/bin/envoy"],
            ),
        ),
        _deployment(
            "productpage-v1",
            "",
            _sidecar(None, ["proxy", "sidecar", "--binaryPath=/usr/local/bin/envoy"]),
        ),
    ]
)
