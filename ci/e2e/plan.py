"""The kind job as data: every step, every command it runs, in order.

The run is a list of steps; each step yields commands (external programs) and actions (work
done in Python: writing the kind config, rewriting the injected YAML, HTTP probes). Plan mode
prints the commands and names the actions as `#` lines; the real run executes the very same
items (ci/e2e/runner.py), so what `invoke e2e --plan` shows is what runs.

Checks of a command's output (`expect`) are pure functions of that output: they are
what the real run asserts, and they are tested here without a cluster.
"""

from __future__ import annotations

import enum
import json
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ci import names
from ci.config import Settings
from ci.e2e import versions
from ci.e2e.istioctl import Tools, istio_release_url, kind_url, kubectl_url
from ci.errors import UserError
from ci.image.registry import registry_host

# A verdict on a command's output: None when it holds, else the reason it does not.
Expect = Callable[[str], "str | None"]

NAMESPACE = "default"
ISTIO_NAMESPACE = "istio-system"
INGRESS_NODE_PORT = 30080
BOOKINFO_DEPLOYMENTS = (
    "details-v1",
    "ratings-v1",
    "reviews-v1",
    "reviews-v2",
    "reviews-v3",
    "productpage-v1",
)
BOOKINFO_SERVICES = ("details", "ratings", "reviews", "productpage")
GATEWAY_DEPLOYMENT = "istio-ingressgateway"
SIDECAR = "istio-proxy"
# Every process's command line in the sidecar, one per line: the proxyv2 base has no `ps`.
PROCESS_LIST = 'for f in /proc/[0-9]*/cmdline; do tr "\\000" " " < "$f"; echo; done'
# MOSN's own log files: it puts them in `logs/` beside its config folder's parent
# (/etc/istio/logs for pilot-agent's /etc/istio/proxy/envoy-rev0.json; MOSN v1.0.0
# pkg/types/config.go InitDefaultPath), else under /home/admin/mosn/logs. The sidecar's
# root filesystem is read-only except /etc/istio/proxy (an emptyDir), so that folder is
# listed too: the bootstrap MOSN was given, and whatever MOSN managed to write.
MOSN_LOG_DIRS = ("/etc/istio/logs", "/home/admin/mosn/logs", "/etc/istio/proxy")
MOSN_LOGS = (
    f"for f in {' '.join(d + '/*' for d in MOSN_LOG_DIRS)}; do "
    '[ -f "$f" ] || continue; echo "==> $f <=="; tail -n 500 "$f"; done'
)


class Do(enum.Enum):
    """The actions: work the runner does in Python. ci/e2e/runner.py maps each to its method
    in one table, so a misspelt action fails when the plan is built, not mid-run."""

    FETCH_KIND = enum.auto()
    FETCH_KUBECTL = enum.auto()
    FETCH_ISTIO = enum.auto()
    CLAIM_CLUSTER = enum.auto()
    WRITE_KIND_CONFIG = enum.auto()
    CLUSTER_CREATED = enum.auto()
    LOAD_IMAGES = enum.auto()
    DERIVE_IMAGES = enum.auto()
    PULL_IMAGES = enum.auto()
    REWRITE_INJECTED = enum.auto()
    REACH_INGRESS = enum.auto()
    NO_RULES = enum.auto()
    ALL_V1 = enum.auto()
    FIFTY_V3 = enum.auto()
    TEST_V2 = enum.auto()
    DIAGNOSE_SIDECARS = enum.auto()


class Record(enum.Enum):
    """Report fields a command's output may fill (ci/e2e/runner.py's RECORDS)."""

    MOSN_VERSION = enum.auto()


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    # A folder put in front of PATH (Bookinfo's cleanup.sh calls `kubectl` by name).
    path_prepend: str = ""
    # Keep the output in this file (manifests, diagnostics) instead of streaming it.
    save: Path | None = None
    check: bool = True
    expect: Expect | None = None
    # Repeat until `expect` holds, for at most the wait timeout.
    poll: bool = False
    hint: str = ""
    # The report field that keeps the (stripped) output once `expect` holds.
    record: Record | None = None

    def line(self) -> str:
        prefix = [f"{key}={shlex.quote(value)}" for key, value in self.env]
        if self.path_prepend:
            prefix.append(f'PATH={shlex.quote(self.path_prepend)}:"$PATH"')
        text = " ".join([*prefix, shlex.join(self.argv)])
        if self.save is not None:
            text += f" > {shlex.quote(str(self.save))}"
        return text


@dataclass(frozen=True)
class Action:
    """Work done in Python: what the runner's method for `do` does, in words."""

    description: str
    do: Do

    def __post_init__(self) -> None:
        if not isinstance(self.do, Do):
            raise TypeError(f"Action {self.description!r}: do={self.do!r} is not a plan.Do")

    def line(self) -> str:
        return f"# {self.description}"


Item = Command | Action


@dataclass
class Step:
    name: str
    items: list[Item] = field(default_factory=list)
    # What must be true for the step to run in cleanup: CLUSTER (this run created it),
    # OWNED (this run checked the name was free, so deleting it harms nobody) or nothing.
    requires: str = "cluster"


CLUSTER, OWNED, NOTHING = "cluster", "owned", ""


def namespace_of(deployment: str) -> str:
    return ISTIO_NAMESPACE if deployment == GATEWAY_DEPLOYMENT else NAMESPACE


def full_image(image: str, pull: bool) -> str:
    """A `registry/repo:tag` reference, as Istio's charts and the kind nodes need it."""
    image = image.strip()
    if not image:
        raise UserError("no image given; pass --image REGISTRY/REPO:TAG (the proxyv2 to prove)")
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and not digest:
        raise UserError(f"image {image!r} has no tag; pass --image REPO:TAG")
    if digest and not pull:
        raise UserError(
            f"image {image!r} is pinned by digest, which `kind load docker-image` cannot keep; "
            "pass a tag, or --pull-image to let the cluster pull it"
        )
    if "/" not in name:
        image = f"docker.io/library/{image}"
    elif not registry_host(name):
        image = f"docker.io/{image}"
    return image


class Plan:
    """The steps of one run, built from settings alone (no cluster, no network)."""

    def __init__(self, settings: Settings, arch: str) -> None:
        self.settings = settings
        self.arch = arch
        self.row = versions.for_istio(settings.istio_version)
        self.image = full_image(settings.image, settings.pull_image)
        cache = settings.path("cache_dir")
        self.tools = Tools.in_cache(cache, self.row, settings.istio_version)
        self.artifacts = settings.path("artifacts")
        self.diagnostics = self.artifacts / "diagnostics"
        # Cluster credentials stay out of the artifacts folder, which gets uploaded.
        self.state = cache / "clusters" / settings.cluster_name
        self.kubeconfig = self.state / "kubeconfig"
        self.kind_config = self.artifacts / "kind-config.yaml"
        self.injected = self.artifacts / "bookinfo-injected.yaml"
        self.rewritten = self.artifacts / "bookinfo-mosn.yaml"
        self.istio_manifest = self.artifacts / "istio-manifest.yaml"
        self.images_list = self.artifacts / "images.txt"
        # Image archives of the kind-load fallback: large, so never in the uploaded artifacts.
        self.scratch = self.state / "images"
        self.bookinfo = self.tools.samples / "bookinfo"

    # -- command builders -------------------------------------------------------------------

    def kind(self, *args: str, **kw) -> Command:
        return Command((str(self.tools.kind), *args), **kw)

    def kubectl(self, *args: str, namespace: str | None = NAMESPACE, **kw) -> Command:
        scope = ("-n", namespace) if namespace else ()
        return Command(
            (str(self.tools.kubectl), "--kubeconfig", str(self.kubeconfig), *scope, *args), **kw
        )

    def istioctl(self, *args: str, **kw) -> Command:
        return Command((str(self.tools.istioctl), *args), **kw)

    def istio_sets(self) -> tuple[str, ...]:
        sets = [
            f"values.global.proxy.image={self.image}",
            f"meshConfig.defaultConfig.binaryPath={names.BINARY_PATH_IN_IMAGE}",
        ]
        if not self.settings.pull_image:
            # The image exists only inside the nodes (kind load): never let them try a pull.
            sets.append("values.global.imagePullPolicy=IfNotPresent")
        return tuple(part for value in sets for part in ("--set", value))

    def timeout(self) -> str:
        return f"--timeout={self.settings.wait_timeout}s"

    def sample(self, file: str) -> str:
        return str(self.bookinfo / file)

    # -- the steps ------------------------------------------------------------------------

    def main(self) -> list[Step]:
        return [
            Step("tools", list(self._tools()), requires=NOTHING),
            Step("images", list(self._images()), requires=NOTHING),
            Step("cluster", list(self._cluster()), requires=NOTHING),
            Step("istio", list(self._istio())),
            Step("gateway runs MOSN", list(self._sidecar_checks(GATEWAY_DEPLOYMENT))),
            Step("bookinfo", list(self._bookinfo())),
            Step(
                "sidecars run MOSN",
                [i for d in BOOKINFO_DEPLOYMENTS for i in self._sidecar_checks(d)],
            ),
            Step("in-mesh productpage", [self._in_mesh_curl()]),
            Step("ingress gateway", list(self._gateway())),
            Step(
                "no rules: v1, v2, v3",
                [Action("GET /productpage until v1, v2, v3 all seen", Do.NO_RULES)],
            ),
            Step("all v1", list(self._all_v1())),
            Step("reviews 50/50 v1/v3", list(self._fifty_v3())),
            Step("jason sees v2", list(self._test_v2())),
        ]

    def _tools(self) -> Iterator[Item]:
        row, arch = self.row, self.arch
        if not self.settings.pull_image:
            yield Command(
                ("docker", "image", "inspect", "--format", "{{.Id}}", self.image),
                hint="build the image first (invoke image, or the action) or pass --pull-image",
            )
        yield Action(
            f"fetch {kind_url(row, arch)} -> {self.tools.kind} "
            "(sha256 pinned in ci/e2e/versions.py)",
            Do.FETCH_KIND,
        )
        url = kubectl_url(row, arch)
        yield Action(
            f"fetch {url} -> {self.tools.kubectl} (sha256 from {url}.sha256)", Do.FETCH_KUBECTL
        )
        url = istio_release_url(self.settings.istio_version, arch)
        yield Action(
            f"fetch {url} -> {self.tools.istio_home} (sha256 from {url}.sha256; istioctl, samples)",
            Do.FETCH_ISTIO,
        )

    def _cluster(self) -> Iterator[Item]:
        name = self.settings.cluster_name
        yield self.kind("get", "clusters", expect=cluster_absent(name))
        yield Action(f"cluster {name} is this run's: cleanup may delete it", Do.CLAIM_CLUSTER)
        yield Action(
            f"write {self.kind_config} (127.0.0.1:{self.settings.ingress_port} -> node port "
            f"{INGRESS_NODE_PORT})",
            Do.WRITE_KIND_CONFIG,
        )
        yield self.kind(
            "create",
            "cluster",
            "--name",
            name,
            "--image",
            self.row.node_image,
            "--config",
            str(self.kind_config),
            "--kubeconfig",
            str(self.kubeconfig),
            "--wait",
            f"{self.settings.wait_timeout}s",
        )
        yield Action(
            f"cluster {name} exists: cleanup uninstalls what this run installs", Do.CLUSTER_CREATED
        )
        # kind's --wait covers the control plane only; pods need a Ready node and the
        # namespace's default service account ("serviceaccount default not found" otherwise).
        yield self.kubectl(
            "wait", "--for=condition=Ready", "node", "--all", self.timeout(), namespace=None
        )
        yield self.kubectl(
            "get", "serviceaccount", "default", "-o", "name", expect=default_account, poll=True
        )
        loaded = "" if self.settings.pull_image else f"{self.image} and "
        yield Action(
            f"kind load docker-image --name {name} <each of {loaded}the images in "
            f"{self.images_list}>; when that fails, docker image save --platform "
            f"{self.platform} + kind load image-archive (Docker's containerd store, kind#3795)",
            Do.LOAD_IMAGES,
        )

    @property
    def platform(self) -> str:
        return f"linux/{self.arch}"

    def manifest_generate(self) -> Command:
        return self.istioctl("manifest", "generate", *self.istio_sets(), save=self.istio_manifest)

    def _images(self) -> Iterator[Item]:
        yield self.manifest_generate()
        yield Action(
            f"images to preload: every container image in {self.istio_manifest} and "
            f"{self.sample('platform/kube/bookinfo.yaml')}, plus the sidecar injector's "
            f"istio-proxy and istio-init images -> {self.images_list}",
            Do.DERIVE_IMAGES,
        )
        yield Action(
            "docker pull each image the engine lacks (once, on this host; logged in when the "
            "workflow was given Docker Hub credentials)",
            Do.PULL_IMAGES,
        )

    def _istio(self) -> Iterator[Item]:
        yield self.istioctl(
            "manifest", "apply", "-y", "--kubeconfig", str(self.kubeconfig), *self.istio_sets()
        )
        for deployment in ("istiod", GATEWAY_DEPLOYMENT):
            yield self.kubectl(
                "rollout",
                "status",
                f"deployment/{deployment}",
                self.timeout(),
                namespace=ISTIO_NAMESPACE,
            )
        yield self.kubectl(
            "wait",
            "--for=condition=Ready",
            "pod",
            "--all",
            self.timeout(),
            namespace=ISTIO_NAMESPACE,
        )
        # kind gives a LoadBalancer no address: pin the gateway's HTTP NodePort to the one the
        # kind config maps to 127.0.0.1 (ports merge by `port`, so only port 80 changes).
        patch = {"spec": {"ports": [{"port": 80, "nodePort": INGRESS_NODE_PORT}]}}
        yield self.kubectl(
            "patch",
            "service",
            GATEWAY_DEPLOYMENT,
            "-p",
            json.dumps(patch, separators=(",", ":")),
            namespace=ISTIO_NAMESPACE,
        )

    def _sidecar_checks(self, deployment: str) -> Iterator[Item]:
        namespace = namespace_of(deployment)
        if deployment == GATEWAY_DEPLOYMENT:
            yield self.kubectl(
                "get",
                "pods",
                "-l",
                "app=istio-ingressgateway",
                "-o",
                "json",
                namespace=namespace,
                expect=pods_ready(1, 1, self.image, container="istio-proxy"),
            )
        exec_ = ("exec", f"deploy/{deployment}", "-c", SIDECAR, "--")
        yield self.kubectl(
            *exec_,
            names.BINARY_PATH_IN_IMAGE,
            "--version",
            namespace=namespace,
            expect=mosn_version,
            record=Record.MOSN_VERSION,
        )
        yield self.kubectl(
            *exec_, "sh", "-c", PROCESS_LIST, namespace=namespace, expect=mosn_running
        )

    def _bookinfo(self) -> Iterator[Item]:
        yield self.istioctl(
            "kube-inject",
            "--kubeconfig",
            str(self.kubeconfig),
            "-f",
            self.sample("platform/kube/bookinfo.yaml"),
            save=self.injected,
        )
        yield Action(
            f"rewrite {self.injected} -> {self.rewritten}: every istio-proxy names "
            f"{names.BINARY_PATH_IN_IMAGE} (pyyaml)",
            Do.REWRITE_INJECTED,
        )
        yield self.kubectl("apply", "-f", str(self.rewritten))
        for deployment in BOOKINFO_DEPLOYMENTS:
            yield self.kubectl("rollout", "status", f"deployment/{deployment}", self.timeout())
        yield self.kubectl("wait", "--for=condition=Ready", "pod", "--all", self.timeout())
        yield self.kubectl(
            "get", "services", "-o", "json", expect=services_present(BOOKINFO_SERVICES)
        )
        yield self.kubectl(
            "get",
            "pods",
            "-o",
            "json",
            expect=pods_ready(len(BOOKINFO_DEPLOYMENTS), 2, self.image),
            poll=True,
        )

    def _in_mesh_curl(self) -> Command:
        return self.kubectl(
            "exec",
            "deploy/ratings-v1",
            "-c",
            "ratings",
            "--",
            "curl",
            "-sS",
            "productpage:9080/productpage",
            expect=shows_title,
            # Ready pods can still be waiting for their first routes from istiod.
            poll=True,
        )

    def _gateway(self) -> Iterator[Item]:
        yield self.kubectl("apply", "-f", self.sample("networking/bookinfo-gateway.yaml"))
        yield Action(
            f"GET http://127.0.0.1:{self.settings.ingress_port}/productpage until 200",
            Do.REACH_INGRESS,
        )

    def _apply_rule(self, file: str) -> Command:
        return self.kubectl("apply", "-f", self.sample(f"networking/{file}"))

    def _all_v1(self) -> Iterator[Item]:
        yield self._apply_rule("destination-rule-all.yaml")
        yield self._apply_rule("virtual-service-all-v1.yaml")
        yield Action("GET /productpage until only v1 answers, then count: all v1", Do.ALL_V1)

    def _fifty_v3(self) -> Iterator[Item]:
        yield self._apply_rule("virtual-service-reviews-50-v3.yaml")
        yield Action(
            "GET /productpage until v3 answers, then count N: only v1/v3, 50/50 by the "
            "binomial verdict",
            Do.FIFTY_V3,
        )

    def _test_v2(self) -> Iterator[Item]:
        yield self._apply_rule("virtual-service-reviews-test-v2.yaml")
        yield Action(
            "POST /login as jason (Referer, session cookie); GET /productpage until jason sees "
            "v2 and anonymous v1, then count: jason all v2, anonymous all v1",
            Do.TEST_V2,
        )

    def diagnostics_steps(self) -> list[Step]:
        d, kubeconfig = self.diagnostics, str(self.kubeconfig)
        items: list[Item] = [
            self._diagnostic("all.txt", "get", "all", "-A", "-o", "wide"),
            self._diagnostic("pods.json", "get", "pods", "-A", "-o", "json"),
            Action(
                f"each istio-proxy's state, restarts and last termination from {d / 'pods.json'}"
                f" -> {d / 'sidecars.txt'}; the report names every pod whose sidecar is not Ready",
                Do.DIAGNOSE_SIDECARS,
            ),
            self._diagnostic("pods-describe.txt", "describe", "pods", "-A"),
            self._diagnostic("events.txt", "get", "events", "-A", "--sort-by=.lastTimestamp"),
            self.istioctl(
                "proxy-status", "--kubeconfig", kubeconfig, **self._keep("proxy-status.txt")
            ),
        ]
        if not self.settings.pull_image:
            # The binary as the image holds it, even when no sidecar stays up to exec into.
            run = ("docker", "run", "--rm", "--network", "none", "--entrypoint")
            version = (names.BINARY_PATH_IN_IMAGE, self.image, "--version")
            items.append(Command((*run, *version), **self._keep("mosn-version-image.txt")))
        for deployment in (*BOOKINFO_DEPLOYMENTS, GATEWAY_DEPLOYMENT):
            items.extend(self._sidecar_diagnostics(deployment))
        items.append(
            self._diagnostic(
                "istiod.log", "logs", "deploy/istiod", "--tail=2000", namespace=ISTIO_NAMESPACE
            )
        )
        name = self.settings.cluster_name
        items.append(self.kind("export", "logs", str(d / "kind"), "--name", name, check=False))
        return [Step("diagnostics", items)]

    def _keep(self, name: str) -> dict:
        """Command options for a diagnostic: its output saved as `name`, its exit code ignored."""
        return {"save": self.diagnostics / name, "check": False}

    def _diagnostic(self, file: str, *args: str, namespace: str | None = None) -> Command:
        return self.kubectl(*args, namespace=namespace, **self._keep(file))

    def _sidecar_diagnostics(self, deployment: str) -> Iterator[Command]:
        target = (f"deploy/{deployment}", "-c", SIDECAR)
        # The istio-proxy container's log is pilot-agent's, MOSN's stdout included.
        for args, file in (
            (("logs", *target, "--tail=2000"), f"sidecar-{deployment}.log"),
            (("logs", *target, "--previous", "--tail=2000"), f"sidecar-{deployment}-previous.log"),
            (
                ("exec", *target, "--", names.BINARY_PATH_IN_IMAGE, "--version"),
                f"mosn-version-{deployment}.txt",
            ),
            (("exec", *target, "--", "sh", "-c", MOSN_LOGS), f"mosn-logs-{deployment}.txt"),
        ):
            yield self._diagnostic(file, *args, namespace=namespace_of(deployment))

    def cleanup_steps(self) -> list[Step]:
        bookinfo = Command(
            ("bash", self.sample("platform/kube/cleanup.sh")),
            env=(("NAMESPACE", NAMESPACE), ("KUBECONFIG", str(self.kubeconfig))),
            path_prepend=str(self.tools.kubectl.parent),
        )
        manifest = str(self.istio_manifest)
        istio = [
            self.manifest_generate(),
            # Deleting the CRDs first takes their resources with them, so kubectl may complain
            # about kinds it no longer knows: the verdict is "nothing left" below, not this
            # exit code.
            self.kubectl(
                "delete", "--ignore-not-found", "-f", manifest, namespace=None, check=False
            ),
            self.kubectl(
                "delete", "namespace", ISTIO_NAMESPACE, "--ignore-not-found", namespace=None
            ),
        ]
        steps = [
            Step("cleanup bookinfo", [bookinfo]),
            Step("uninstall istio", istio),
            Step("nothing left", list(self._nothing_left())),
        ]
        if not self.settings.keep_cluster:
            name, kubeconfig = self.settings.cluster_name, str(self.kubeconfig)
            delete = self.kind("delete", "cluster", "--name", name, "--kubeconfig", kubeconfig)
            steps.append(Step("delete cluster", [delete], requires=OWNED))
        return steps

    def _nothing_left(self) -> Iterator[Command]:
        def gone(what: str, output: str, expect: Expect, namespace: str | None = None) -> Command:
            return self.kubectl(
                "get", what, "-o", output, namespace=namespace, expect=expect, poll=True
            )

        yield gone(
            "deployments,services,pods", "json", only_kubernetes_service, namespace=NAMESPACE
        )
        yield gone("namespaces", "name", absent([f"namespace/{ISTIO_NAMESPACE}"]))
        webhooks = "mutatingwebhookconfigurations,validatingwebhookconfigurations"
        yield gone(f"crd,{webhooks}", "name", absent(["istio"]))

    def lines(self) -> list[str]:
        out: list[str] = []
        for step in self.main():
            out.extend(item.line() for item in step.items)
        out.append("# only when a step failed: diagnostics into " + str(self.diagnostics))
        for step in self.diagnostics_steps():
            out.extend(item.line() for item in step.items)
        out.append("# always: cleanup (the cluster only when this run created it)")
        for step in self.cleanup_steps():
            out.extend(item.line() for item in step.items)
        return out


# -- what the output of a command must show ---------------------------------------------


def _json(output: str) -> dict | None:
    try:
        value = json.loads(output)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def cluster_absent(name: str) -> Expect:
    def check(output: str) -> str | None:
        if name in output.split():
            return (
                f"a kind cluster named {name!r} already exists and was not made by this run; "
                f"delete it (kind delete cluster --name {name}) or pass another --cluster-name"
            )
        return None

    return check


def pods_ready(count: int, containers: int, image: str, container: str = SIDECAR) -> Expect:
    """`count` running pods, each with `containers` containers all ready, sidecar on `image`."""

    def check(output: str) -> str | None:
        data = _json(output)
        if data is None:
            return "kubectl did not print a pod list"
        pods = [
            p
            for p in data.get("items", [])
            if not (p.get("metadata") or {}).get("deletionTimestamp")
        ]
        if len(pods) != count:
            return f"{len(pods)} pods, expected {count}"
        for pod in pods:
            name = pod["metadata"]["name"]
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            ready = sum(1 for s in statuses if s.get("ready"))
            if len(statuses) != containers or ready != containers:
                return f"pod {name} is {ready}/{len(statuses)} ready, expected {containers}/{containers}"
            images = {c.get("name"): c.get("image") for c in pod["spec"].get("containers", [])}
            if images.get(container) != image:
                return f"pod {name} runs {container} from {images.get(container)}, not {image}"
        return None

    return check


def default_account(output: str) -> str | None:
    if "serviceaccount/default" in output.split():
        return None
    return "the default service account does not exist yet"


def services_present(expected: tuple[str, ...]) -> Expect:
    def check(output: str) -> str | None:
        data = _json(output)
        if data is None:
            return "kubectl did not print a service list"
        found = {(s.get("metadata") or {}).get("name") for s in data.get("items", [])}
        missing = [s for s in expected if s not in found]
        return f"services missing: {', '.join(missing)}" if missing else None

    return check


def mosn_version(output: str) -> str | None:
    if names.mosn_version_line(output).startswith("mosn version "):
        return None
    return f"{names.BINARY_PATH_IN_IMAGE} --version printed {output.strip()[:200]!r}, not 'mosn version ...'"


def mosn_running(output: str) -> str | None:
    programs = [line.split()[0].rsplit("/", 1)[-1] for line in output.splitlines() if line.strip()]
    if "envoy" in programs:
        return "an envoy process runs in the sidecar"
    if "mosn" not in programs:
        return f"no mosn process in the sidecar (processes: {', '.join(sorted(set(programs)))})"
    return None


def shows_title(output: str) -> str | None:
    from ci.e2e.bookinfo import TITLE

    return None if TITLE in output else f"productpage did not show {TITLE}"


def only_kubernetes_service(output: str) -> str | None:
    data = _json(output)
    if data is None:
        return "kubectl did not print a list"
    left = [
        f"{item.get('kind')}/{(item.get('metadata') or {}).get('name')}"
        for item in data.get("items", [])
    ]
    left = [item for item in left if item != "Service/kubernetes"]
    return f"still present: {', '.join(left)}" if left else None


def absent(needles: list[str]) -> Expect:
    def check(output: str) -> str | None:
        left = [line for line in output.split() if any(n in line for n in needles)]
        return f"still present: {', '.join(left)}" if left else None

    return check
