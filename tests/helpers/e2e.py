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
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs

from tests.helpers.net import serving

TITLE = "<title>Simple Bookstore App</title>"


def stars(color: str, filled: int) -> str:
    full = '<span class="glyphicon glyphicon-star"></span>\n' * filled
    empty = '<span class="glyphicon glyphicon-star-empty"></span>\n' * (5 - filled)
    return f'<font color="{color}">\n{full}{empty}</font>\n'


def productpage_html(version: str, user: str | None = None) -> str:
    """productpage as each reviews version renders it (facts: MISSION.md)."""
    if version == "error":
        reviews = (
            "<h2>Error fetching product reviews!</h2>\n"
            "<p>Sorry, product reviews are currently unavailable for this book.</p>\n"
        )
    else:
        color = {"v2": "black", "v3": "red"}.get(version)
        blocks = []
        for reviewer, rating in (("Reviewer1", 5), ("Reviewer2", 4)):
            rating_html = stars(color, rating) if color else ""
            if version == "ratings-down":
                rating_html = "<p><i>Ratings service is currently unavailable</i></p>\n"
            blocks.append(
                "<blockquote>\n<p>An extremely entertaining play by Shakespeare.</p>\n"
                f"<small>{reviewer}</small>\n{rating_html}</blockquote>\n"
            )
        reviews = '<h4 class="text-center text-primary">Book Reviews</h4>\n' + "".join(blocks)
    welcome = f'<span class="navbar-text">signed in as {user}</span>' if user else ""
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
        f"{TITLE}\n</head>\n<body>\n<nav>{welcome}</nav>\n"
        '<h3 class="text-center text-primary">The Comedy of Errors</h3>\n'
        f'<div class="col-md-6">\n{reviews}</div>\n</body>\n</html>\n'
    )


class ProductpageStandIn:
    """Routing modes: none (v1, v2, v3 in turn), all-v1, 50-v3, 80-v3, test-v2."""

    SECRET = b"stand-in-flask-secret"

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

    def sign(self, user: str) -> str:
        payload = base64.urlsafe_b64encode(json.dumps({"user": user}).encode()).decode()
        mac = hmac.new(self.SECRET, payload.encode(), hashlib.sha256).hexdigest()[:16]
        return f"{payload}.{mac}"

    def user_from(self, cookie_header: str | None) -> str | None:
        if not cookie_header:
            return None
        cookie = SimpleCookie(cookie_header)
        if "session" not in cookie:
            return None
        payload, _, mac = cookie["session"].value.partition(".")
        good = hmac.new(self.SECRET, payload.encode(), hashlib.sha256).hexdigest()[:16]
        if not hmac.compare_digest(mac, good):
            return None
        return json.loads(base64.urlsafe_b64decode(payload))["user"]

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

        def do_GET(self):
            if self.path == "/productpage":
                user = app.user_from(self.headers.get("Cookie"))
                # productpage forwards the logged-in user to reviews as `end-user`.
                self._send(200, productpage_html(app.route(user), user))
            elif self.path == "/logout":
                self._send(
                    302,
                    headers={
                        "Location": "/productpage",
                        "Set-Cookie": "session=; Max-Age=0; Path=/",
                    },
                )
            else:
                self._send(404, "not routed by the gateway")

        def do_POST(self):
            if self.path != "/login":
                self._send(404)
                return
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            user = (form.get("username") or [""])[0]
            referer = self.headers.get("Referer")
            if not referer:
                # productpage answers login with redirect(request.referrer): no Referer, no target.
                self._send(500, "Internal Server Error")
                return
            cookie = f"session={app.sign(user)}; HttpOnly; Path=/"
            self._send(302, headers={"Location": referer, "Set-Cookie": cookie})

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
