"""Stand-ins for what only a live cluster has: Bookinfo's productpage and the CLI tools.

Nothing here pretends to be tested: these are the counterparts the e2e tests talk to in place
of a kind cluster, which cannot run on this machine. The productpage stand-in is the one the
mesh check runs (ci/mesh/bookinfo.py: the real page's markup, its /login + session cookie +
end-user semantics, compared with the real productpage there); here its reviews answer
follows the rule last "applied" through the stand-in kubectl instead of a mesh.
"""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

from ci.mesh import bookinfo
from tests.helpers.net import serving


def productpage_html(version: str, user: str | None = None) -> str:
    """productpage as the real one renders each reviews version: v1, v2, v3, error (reviews
    unreachable) or ratings-down (v2/v3 without ratings)."""
    if version == "error":
        return bookinfo.page(503, {"error": bookinfo.REVIEWS_DOWN}, user)
    if version == "ratings-down":
        return bookinfo.page(200, bookinfo.reviews_body("v3", ratings=False), user)
    return bookinfo.page(200, bookinfo.reviews_body(version), user)


class ProductpageStandIn(bookinfo.Productpage):
    """Routing modes: none (v1, v2, v3 in turn), all-v1, 50-v3, 80-v3, test-v2."""

    sign = staticmethod(bookinfo.sign)
    user_from = staticmethod(bookinfo.user_from)

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

    def reviews(self, end_user: str | None, headers: dict[str, str]) -> tuple[int, dict]:
        version = self.route(end_user)
        if version == "error":
            return 503, {"error": bookinfo.REVIEWS_DOWN}
        return 200, bookinfo.reviews_body(version)


def productpage_server(app: ProductpageStandIn, port: int = 0):
    """The productpage stand-in on 127.0.0.1; a context manager yielding its base URL."""
    return serving(bookinfo.productpage_handler(app), port)


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
