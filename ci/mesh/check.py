"""The mesh check's run: istiod, the Bookinfo stand-ins, MOSN as sidecar and gateway, the kind
job's scenarios, and a report in the kind job's format.

A rule counts only once it has reached MOSN: after a rule file is written, the check waits
until the sidecar's config dump routes reviews as the file says (subsets and weights), and
only then do the kind job's scenarios (ci/e2e/scenarios.py) settle and count.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ci import log
from ci.config import Settings
from ci.e2e import bookinfo as reader
from ci.e2e import stats
from ci.e2e.report import FAILED, Check, ChecksFailed, Report
from ci.e2e.scenarios import Scenarios, show
from ci.errors import UserError
from ci.fsutil import atomic_write
from ci.mesh import binaries, bookinfo, istiod, network
from ci.mesh.binaries import IstioBinaries
from ci.mesh.istiod import ConfigFolder, Endpoint, Istiod, IstiodPorts, fqdn, service_entry
from ci.mesh.mosn import Mosn, fetch
from ci.mesh.network import BOOKINFO_PORT, Network, bindable
from ci.mesh.proxies import ROUTER, SIDECAR, Proxy, Workload

# The rule files the kind job applies, in its order (ci/e2e/plan.py), and one more rule
# change for the istiod restart.
GATEWAY_RULES = "bookinfo-gateway.yaml"
DESTINATION_RULES = "destination-rule-all.yaml"
ALL_V1 = "virtual-service-all-v1.yaml"
FIFTY_V3 = "virtual-service-reviews-50-v3.yaml"
TEST_V2 = "virtual-service-reviews-test-v2.yaml"
REVIEWS_V3 = "virtual-service-reviews-v3.yaml"
RULE_FILES = (GATEWAY_RULES, DESTINATION_RULES, ALL_V1, FIFTY_V3, TEST_V2)
# Between two looks at MOSN's config dump, and between two settling requests: a rule reaches
# MOSN here in well under a second.
POLL = 0.05
LIMITS = (
    "no mTLS: istiod's CA is off, so no workload has a certificate (istiod 1.10.6 runs its CA "
    "without Kubernetes, but refuses every workload's request there: none of its "
    "authenticators can vouch for a workload without the API server; see docs/mesh.md)",
    "no traffic capture: the sidecar runs with interception mode NONE, productpage calls it on "
    "127.0.0.1:9080; its 15001/15006 listeners are bound but nothing is redirected to them",
    "no Kubernetes registry: Bookinfo's services are ServiceEntries carrying its pods' labels; "
    "productpage and reviews v1/v2/v3 are stand-ins (ci/mesh/bookinfo.py), details and "
    "ratings do not run",
)


@dataclass
class MeshReport(Report):
    TITLE = "MOSN under a real istiod (mesh check, no cluster)"
    SUITE = "mosn-proxyv2 mesh check"

    facts: list[str] = field(default_factory=list)

    def about(self) -> list[str]:
        return [f"- Istio {self.istio_version}", *(f"- {fact}" for fact in self.facts)]


def new_report(settings: Settings) -> MeshReport:
    return MeshReport(
        image=settings.image or str(settings.path("dist")),
        istio_version=settings.istio_version,
        node_image="",
        kind_release="",
    )


def step(report: Report, name: str, action: Callable[[], str | None]) -> Check:
    """Run one check of the report; a UserError fails it with its sentence."""
    check = Check(name)
    started = time.monotonic()
    try:
        with log.stage(name):
            check.detail = action() or ""
    except UserError as exc:
        check.status, check.detail = FAILED, str(exc)
    except KeyboardInterrupt:
        check.status, check.detail = FAILED, "interrupted (Ctrl-C)"
        raise
    except Exception as exc:  # a defect of the check itself: never reported as passed
        check.status, check.detail = FAILED, f"crashed: {type(exc).__name__}: {exc}"
        raise
    finally:
        check.seconds = time.monotonic() - started
        report.checks.append(check)
    return check


class MeshCheck:
    def __init__(
        self,
        settings: Settings,
        report: MeshReport,
        mosn: Mosn,
        istio: IstioBinaries,
        networking: Path,
        work: Path,
        private: bool,
    ) -> None:
        self.settings = settings
        self.report = report
        self.mosn = mosn
        self.istio = istio
        self.networking = networking
        self.work = work
        self.network = Network(private)
        self.artifacts = settings.path("artifacts")
        self.diagnostics = self.artifacts / "diagnostics"
        self.design = stats.design(settings.samples) if settings.samples else stats.choose_n()
        self.servers = contextlib.ExitStack()
        self.istiod: Istiod | None = None
        self.sidecar: Proxy | None = None
        self.gateway: Proxy | None = None
        self.config: ConfigFolder | None = None
        self.productpage: Endpoint | None = None
        self.gateway_port = 0
        self.mosn_pids: dict[str, int | None] = {}
        self.timings: dict[str, float] = {}
        self.scenarios: Scenarios | None = None

    # -- the run --------------------------------------------------------------------------------

    def steps(self) -> list[tuple[str, Callable[[], str | None]]]:
        steps = [
            ("network", self.start_network),
            ("istiod", self.start_istiod),
            ("bookinfo stand-ins", self.start_standins),
            ("sidecar runs MOSN", self.start_sidecar),
            ("gateway runs MOSN", self.start_gateway),
            ("ingress gateway", self.reach_ingress),
            ("no rules: v1, v2, v3", self.no_rules),
            ("all v1", self.all_v1),
            ("reviews 50/50 v1/v3", self.fifty_v3),
            ("jason sees v2", self.test_v2),
            ("rules without a MOSN restart", self.same_mosn),
        ]
        if self.settings.restart_istiod:
            steps.append(("istiod restart", self.restart_istiod))
        return steps

    def run(self) -> MeshReport:
        """Every step in order until one fails, then stop everything; the report is written
        whatever happens (Ctrl-C included)."""
        started = time.monotonic()
        failure: Check | None = None
        shutil.rmtree(self.diagnostics, ignore_errors=True)
        try:
            for name, action in self.steps():
                check = step(self.report, name, action)
                if check.status == FAILED:
                    failure = check
                    break
        except KeyboardInterrupt:
            self.keep_diagnostics()
            raise
        finally:
            if failure is not None:
                self.keep_diagnostics()
            stopped = step(self.report, "stop everything", self.stop_all)
            failure = failure or (stopped if stopped.status == FAILED else None)
            self.timings["check"] = time.monotonic() - started
            self.report.notes.append("timings: " + self.describe_timings())
            if self.scenarios is not None:
                client = self.scenarios.client
                self.report.notes.append(
                    f"requests through the gateway: {client.requests}, of which "
                    f"{len(client.retried)} answered 502/503/504 or nothing and were sent again"
                )
            paths = self.report.write(self.artifacts)
            log.info(f"    report: {paths['markdown']} ({paths['junit']}, {paths['chart']})")
        if failure is not None:
            where = (
                f"; logs and config dumps are in {self.diagnostics}"
                if failure.name != "stop everything"
                else ""
            )
            raise ChecksFailed(
                f"mesh check '{failure.name}' failed: {failure.detail}; report in "
                f"{self.artifacts}{where}",
                self.report,
            )
        return self.report

    def describe_timings(self) -> str:
        return ", ".join(f"{name} {seconds:.2f}s" for name, seconds in self.timings.items())

    # -- the steps ------------------------------------------------------------------------------

    def start_network(self) -> str:
        self.network.check_fixed_ports()
        self.gateway_port = self.network.port(istiod.GATEWAY_PORT)
        self.report.facts.append(f"network: {self.network.describe()}")
        if self.gateway_port != istiod.GATEWAY_PORT:
            self.report.notes.append(
                f"the Gateway's port {istiod.GATEWAY_PORT} moved to {self.gateway_port} in the "
                "check's own copy of bookinfo-gateway.yaml (a shared loopback: port 80 is "
                "root's, and another run's)"
            )
        return f"{self.network.describe()}; gateway on port {self.gateway_port}"

    def start_istiod(self) -> str:
        net = self.network
        ports = IstiodPorts(
            grpc=net.port(istiod.GRPC_PORT),
            http=net.port(istiod.HTTP_PORT),
            https=net.port(istiod.HTTPS_PORT),
            monitoring=net.port(istiod.MONITORING_PORT),
            ctrlz=net.port(istiod.CTRLZ_PORT),
        )
        self.config = ConfigFolder(self.work / "config", self.gateway_port)
        self.istiod = Istiod(self.istio.pilot_discovery, self.work, self.config, ports)
        self.istiod.write_mesh_config(net.port(istiod.VIRTUAL_OUTBOUND_PORT, "0.0.0.0"))
        seconds = self.istiod.start()
        self.timings["istiod ready"] = seconds
        return f"pilot-discovery ready in {seconds:.2f}s (xDS on {self.istiod.grpc_address})"

    def start_standins(self) -> str:
        assert self.config is not None
        reviews = []
        for version in reader.VERSIONS:
            address = self.network.address(f"reviews-{version}")
            port = self.servers.enter_context(
                bookinfo.serving(bookinfo.reviews_handler(version), address, self.pod_port())
            )
            reviews.append(Endpoint(address, port, {"app": "reviews", "version": version}))
        address = self.network.address("productpage")
        page = bookinfo.MeshProductpage(BOOKINFO_PORT)
        port = self.servers.enter_context(
            bookinfo.serving(bookinfo.productpage_handler(page), address, self.pod_port())
        )
        productpage = Endpoint(address, port, {"app": "productpage", "version": "v1"})
        self.config.put(service_entry("reviews", BOOKINFO_PORT, reviews))
        self.config.put(service_entry("productpage", BOOKINFO_PORT, [productpage]))
        self.productpage = productpage
        where = ", ".join(f"{e.labels['version']} {e.address}:{e.port}" for e in reviews)
        return (
            f"reviews {where}; productpage {address}:{port} (ServiceEntries, port {BOOKINFO_PORT})"
        )

    def pod_port(self) -> int:
        """Each stand-in on its own address: Bookinfo's container port in a private namespace,
        a free one (0) on a shared loopback."""
        return BOOKINFO_PORT if self.network.private else 0

    def _proxy(self, workload: Workload) -> Proxy:
        assert self.istiod is not None
        return Proxy(
            workload,
            self.mosn.binary,
            self.istio,
            self.istiod.grpc_address,
            self.settings.istio_version,
            self.work,
            self.network,
            self.settings.direct,
            self.settings.xds_refresh_delay,
        )

    def start_sidecar(self) -> str:
        assert self.productpage is not None
        labels = {"app": "productpage", "version": "v1"}
        workload = Workload(
            "productpage-v1",
            "default",
            SIDECAR,
            self.productpage.address,
            labels,
            "bookinfo-productpage",
        )
        # Kept before it starts: a failed start still has its logs kept and its processes stopped.
        self.sidecar = self._proxy(workload)
        listener = f"127.0.0.1_{BOOKINFO_PORT}"
        seconds = self._until_listening("sidecar", self.sidecar, listener, BOOKINFO_PORT)
        return f"{self.sidecar.describe()}: listener {listener} (reviews:{BOOKINFO_PORT}) bound in {seconds:.2f}s"

    def start_gateway(self) -> str:
        assert self.config is not None
        labels = {"app": "istio-ingressgateway", "istio": "ingressgateway"}
        workload = Workload(
            "istio-ingressgateway",
            "istio-system",
            ROUTER,
            self.network.address("gateway"),
            labels,
            "istio-ingressgateway-service-account",
        )
        applied = self.config.apply(self.rule(GATEWAY_RULES))
        self.gateway = self._proxy(workload)
        listener = f"0.0.0.0_{self.gateway_port}"
        seconds = self._until_listening("gateway", self.gateway, listener, self.gateway_port)
        return f"applied {', '.join(applied)}; listener {listener} bound in {seconds:.2f}s"

    def _until_listening(self, role: str, proxy: Proxy, listener: str, port: int) -> float:
        """Start `proxy` and wait until its MOSN accepts on `listener`; the seconds it took."""
        self.report.facts.append(f"{role}: {proxy.describe()}")
        proxy.start()
        seconds = proxy.wait_for_listener(listener, port, "127.0.0.1", self.settings.wait_timeout)
        self.timings[f"{role} listening"] = seconds
        self.mosn_pids[role] = proxy.mosn_pid()
        return seconds

    def reach_ingress(self) -> str:
        client = reader.Client(f"http://127.0.0.1:{self.gateway_port}")
        self.scenarios = Scenarios(
            client,
            self.report,
            self.design,
            self.settings.wait_timeout,
            # The config dump tells when a rule is in MOSN: no window on top of it.
            settle_window=0,
            settle_poll=POLL,
        )
        self.report.notes.append(f"weighted routing: {self.design.describe()}")
        return self.scenarios.reach_ingress()

    def no_rules(self) -> str:
        assert self.scenarios is not None
        self.await_routes()
        return self.scenarios.no_rules()

    def all_v1(self) -> str:
        assert self.scenarios is not None
        applied = f"{self.apply(DESTINATION_RULES)}; {self.apply(ALL_V1)}"
        return f"{applied}; {self.scenarios.all_v1()}"

    def fifty_v3(self) -> str:
        assert self.scenarios is not None
        applied = self.apply(FIFTY_V3)
        return f"{applied}; {self.scenarios.fifty_v3()}"

    def test_v2(self) -> str:
        assert self.scenarios is not None
        applied = self.apply(TEST_V2)
        return f"{applied}; {self.scenarios.test_v2()}"

    def same_mosn(self) -> str:
        now = {"sidecar": self.sidecar, "gateway": self.gateway}
        changed = []
        for name, proxy in now.items():
            assert proxy is not None
            before, after = self.mosn_pids.get(name), proxy.mosn_pid()
            if before is None or before != after:
                changed.append(f"{name} MOSN pid {before} then {after}")
        if changed:
            raise UserError(f"MOSN was restarted while the rules changed: {'; '.join(changed)}")
        pids = ", ".join(f"{name} pid {pid}" for name, pid in self.mosn_pids.items())
        return f"the same MOSN processes took every rule ({pids})"

    def restart_istiod(self) -> str:
        """Restart istiod; measure how long MOSN takes to subscribe again and to take a rule."""
        assert self.istiod is not None and self.scenarios is not None and self.config is not None
        client = self.scenarios.client
        jason = client.session("jason")
        self.istiod.stop()
        down = client.count(jason, 10)
        ready = self.istiod.start()
        back = time.monotonic()
        wanted = [self.sidecar, self.gateway]
        for _ in self.scenarios.until_deadline("MOSN connects to the restarted istiod"):
            connections = self.istiod.connections()
            if all(any(c.startswith(p.workload.node_id) for c in connections) for p in wanted if p):
                break
        resubscribed = time.monotonic() - back
        self.timings["re-subscribe after istiod restart"] = resubscribed
        applied = self.apply(REVIEWS_V3)
        counts = client.count(client.session(), 10)
        if down != {"v2": 10} or counts != {"v3": 10}:
            raise UserError(
                f"while istiod was down jason saw {show(down)} (expected v2 only); after "
                f"{REVIEWS_V3} anonymous saw {show(counts)} (expected v3 only)"
            )
        return (
            f"while istiod was down MOSN kept the last rule (jason {show(down)}); istiod ready "
            f"again in {ready:.2f}s; both proxies subscribed again {resubscribed:.2f}s later; "
            f"{applied}"
        )

    # -- rules ----------------------------------------------------------------------------------

    def rule(self, name: str) -> Path:
        path = self.networking / name
        if not path.is_file():
            raise UserError(
                f"{path} is missing: --istio-samples must hold Istio's samples/ "
                "(bookinfo/networking/*.yaml)"
            )
        return path

    def apply(self, name: str) -> str:
        """Write the rule file into istiod's folder and wait until MOSN routes by it."""
        assert self.config is not None
        self.config.apply(self.rule(name))
        seconds = self.await_routes()
        self.timings[f"{name.removesuffix('.yaml')} in MOSN"] = seconds
        return f"{name} in MOSN after {seconds:.2f}s"

    def await_routes(self) -> float:
        """Wait until the sidecar's config dump routes reviews as the applied rules say: the
        VirtualService's routes (subsets and weights), and a cluster for each subset of the
        DestinationRule. The seconds that took."""
        assert self.config is not None and self.sidecar is not None
        wanted = self.config.routes("reviews")
        clusters = {subset_cluster("reviews", s) for s in self.config.subsets("reviews")}
        started = time.monotonic()
        deadline = started + self.settings.wait_timeout
        while True:
            dump = self.sidecar.config_dump()
            seen = dump_routes(dump, fqdn("reviews"), BOOKINFO_PORT)
            missing = clusters - set((dump or {}).get("cluster") or {})
            if seen == wanted and not missing:
                return time.monotonic() - started
            if time.monotonic() > deadline:
                raise UserError(
                    f"after {self.settings.wait_timeout}s MOSN's config dump routes reviews "
                    f"{seen} instead of {wanted}"
                    + (f" and lacks {', '.join(sorted(missing))}" if missing else "")
                )
            time.sleep(POLL)

    # -- the end --------------------------------------------------------------------------------

    def keep_diagnostics(self) -> None:
        """Every log, and each proxy's config dump as MOSN and as istiod see it."""
        d = self.diagnostics
        d.mkdir(parents=True, exist_ok=True)
        for path in self.work.rglob("*.log"):
            shutil.copyfile(path, d / str(path.relative_to(self.work)).replace("/", "-"))
        for proxy in (self.sidecar, self.gateway):
            if proxy is None:
                continue
            name = proxy.workload.name
            dump = proxy.config_dump()
            if dump is not None:
                atomic_write(d / f"{name}-mosn-config-dump.json", json.dumps(dump, indent=2))
            if (
                self.istiod is not None
                and self.istiod.process
                and self.istiod.process.poll() is None
            ):
                atomic_write(
                    d / f"{name}-istiod-config-dump.json",
                    self.istiod.config_dump(proxy.workload.proxy_id),
                )
        if self.config is not None:
            shutil.copytree(self.config.folder, d / "istiod-config", dirs_exist_ok=True)

    def stop_all(self) -> str:
        parts = {"gateway": self.gateway, "sidecar": self.sidecar, "istiod": self.istiod}
        started = {name: part for name, part in parts.items() if part and part.process}
        # Together: each stop waits for its process to drain and exit.
        with ThreadPoolExecutor(max_workers=len(started) or 1) as pool:
            list(pool.map(lambda part: part.stop(), started.values()))
        self.servers.close()
        left = [name for name, part in started.items() if part.process.poll() is None]
        if left:
            raise UserError(f"still running after stop: {', '.join(left)}")
        busy = [] if self.network.private else self._ports_still_bound()
        if busy:
            raise UserError(f"ports still bound after stop: {', '.join(busy)}")
        return f"stopped {', '.join(started) or 'nothing'} and the stand-ins"

    def _ports_still_bound(self) -> list[str]:
        ports = [("127.0.0.1", BOOKINFO_PORT), ("0.0.0.0", self.gateway_port)]
        return [f"{h}:{p}" for h, p in ports if p and not bindable(h, p)]


def dump_routes(dump: dict | None, host: str, port: int) -> list[list[tuple[str, int]]] | None:
    """How MOSN's config dump routes `host` on route config `port`: route by route, each
    route's (subset, weight) clusters, as ci/mesh/istiod.py reads them from a rule."""
    if not dump:
        return None
    config = (dump.get("routers") or {}).get(str(port)) or {}
    for virtual_host in config.get("virtual_hosts") or []:
        if host not in (virtual_host.get("domains") or []):
            continue
        routes = []
        for router in virtual_host.get("routers") or []:
            route = router.get("route") or {}
            weighted = route.get("weighted_clusters")
            if weighted:
                clusters = [c.get("cluster") or {} for c in weighted]
                routes.append(
                    sorted((_subset(c.get("name", "")), int(c.get("weight", 0))) for c in clusters)
                )
            else:
                routes.append([(_subset(route.get("cluster_name", "")), 100)])
        return routes
    return None


def subset_cluster(service: str, subset: str) -> str:
    """The cluster istiod makes for a subset (the inverse of `_subset`)."""
    return f"outbound|{BOOKINFO_PORT}|{subset}|{fqdn(service)}"


def _subset(cluster: str) -> str:
    """`outbound|9080|v1|reviews.default.svc.cluster.local` -> v1."""
    parts = cluster.split("|")
    return parts[2] if len(parts) == 4 else cluster


# -- the whole check ------------------------------------------------------------------------------


def run(settings: Settings) -> MeshReport:
    """Find MOSN, Istio's binaries and the rule files here, then run the check in a child
    process (with its own network namespace when it can have one)."""
    # The releases whose control plane the check was read against and run with.
    known = sorted(binaries.RELEASES)
    if settings.istio_version not in known:
        raise UserError(
            f"the mesh check knows Istio {', '.join(known)}, not {settings.istio_version!r};"
            f" pass --istio-version {known[-1]}"
        )
    if settings.samples < 0 or settings.wait_timeout <= 0:
        raise UserError("--samples must be 0 or more and --wait-timeout more than 0 seconds")
    private = network.choose(settings.network)
    report = new_report(settings)
    report.notes.extend(f"limit: {limit}" for limit in LIMITS)
    mosn: Mosn | None = None
    istio: IstioBinaries | None = None
    networking: Path | None = None

    def take_mosn() -> str:
        nonlocal mosn
        mosn = fetch(settings, work)
        report.mosn_version = mosn.version
        report.facts.append(f"MOSN: {mosn.origin}")
        return f"{mosn.version} from {mosn.origin}"

    def take_istio() -> str:
        nonlocal istio
        istio = binaries.resolve(settings)
        report.facts.append(f"Istio binaries: {istio.origin}")
        agent = "pilot-agent available" if istio.pilot_agent else "no pilot-agent: MOSN directly"
        return f"{istio.origin}; {agent}"

    def take_rules() -> str:
        nonlocal networking
        networking = networking_folder(settings)
        missing = [name for name in RULE_FILES if not (networking / name).is_file()]
        if missing:
            raise UserError(
                f"{networking} lacks {', '.join(missing)}: not Istio's Bookinfo samples"
            )
        report.facts.append(f"rules: Bookinfo's own files from {networking}")
        return f"{', '.join(RULE_FILES)} from {networking}"

    work = Path(tempfile.mkdtemp(prefix="mosn-proxyv2-mesh-"))
    try:
        for name, action in (
            ("mosn", take_mosn),
            ("istio binaries", take_istio),
            ("rule files", take_rules),
        ):
            check = step(report, name, action)
            if check.status == FAILED:
                report.write(settings.path("artifacts"))
                raise ChecksFailed(f"mesh check '{name}' failed: {check.detail}", report)
        assert mosn is not None and istio is not None and networking is not None
        mesh = MeshCheck(settings, report, mosn, istio, networking, work, private)
        return network.in_child(private, mesh.run)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def networking_folder(settings: Settings) -> Path:
    """Bookinfo's networking rules: under --istio-samples, else the Istio release's (fetched
    into cache_dir as the kind job fetches it)."""
    if settings.istio_samples:
        samples = settings.path("istio_samples")
        if not samples.is_dir():
            raise UserError(f"--istio-samples {samples} is not a folder")
    else:
        from ci.e2e import versions
        from ci.e2e.istioctl import Tools, ensure_istio, host_arch

        tools = Tools.in_cache(
            settings.path("cache_dir"),
            versions.for_istio(settings.istio_version),
            settings.istio_version,
        )
        ensure_istio(tools, settings.istio_version, host_arch())
        samples = tools.samples
    return samples / "bookinfo" / "networking"
