"""The e2e Runner: runs the items of a ci/e2e/plan.py Plan in order (commands through
ci.proc.run, actions as its own methods) and writes the report."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable

import yaml

from ci import log, proc
from ci.e2e import bookinfo, images, inject, sidecars, stats
from ci.e2e.istioctl import (
    download,
    ensure_istio,
    kind_url,
    kubectl_url,
    published_sha256,
)
from ci.e2e.plan import (
    CLUSTER,
    INGRESS_NODE_PORT,
    OWNED,
    Action,
    Command,
    Do,
    Item,
    Plan,
    Record,
    Step,
)
from ci.e2e.report import FAILED, SKIPPED, Check, ChecksFailed, Report
from ci.e2e.scenarios import POLL_SECONDS, Scenarios
from ci.e2e.versions import kind_sha256
from ci.errors import UserError
from ci.fsutil import atomic_write


def preview_images(plan: Plan) -> list[str]:
    """The preload list as `#` lines: derived now when the Istio release is cached."""
    head = "#   the list:"
    if not plan.tools.istioctl.is_file():
        return [
            f"{head} derived at run time; Istio {plan.settings.istio_version} is not in "
            f"{plan.tools.istio_home} yet"
        ]
    generated = proc.run(
        plan.manifest_generate().argv, stream=False, separate_stderr=True, what="istioctl"
    )
    return [head, *(f"#   {image}" for image in preload_list(plan, generated))]


def preload_list(plan: Plan, istio_manifest: str) -> list[str]:
    bookinfo_yaml = (plan.bookinfo / "platform" / "kube" / "bookinfo.yaml").read_text()
    found = images.derive([istio_manifest, bookinfo_yaml])
    # The image under test is loaded from this host's engine (or pulled by the cluster).
    return [image for image in found if image != plan.image]


class Runner:
    def __init__(
        self,
        plan: Plan,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plan = plan
        self.settings = plan.settings
        self.sleep = sleep
        self.clock = clock
        self.owned = False
        self.created = False
        self.preload: list[str] = []
        self.client = bookinfo.Client(f"http://127.0.0.1:{self.settings.ingress_port}")
        self.design = (
            stats.design(self.settings.samples) if self.settings.samples else stats.choose_n()
        )
        self.report = Report(
            image=plan.image,
            istio_version=self.settings.istio_version,
            node_image=plan.row.node_image,
            kind_release=plan.row.kind_release,
        )
        self.report.notes.append(f"weighted routing: {self.design.describe()}")
        if self.design.false_fail > stats.ALPHA or self.design.false_pass > stats.BETA:
            log.warn(
                f"--samples {self.design.n} is weaker than the default: {self.design.describe()}"
            )
        self.scenarios = Scenarios(
            self.client,
            self.report,
            self.design,
            self.settings.wait_timeout,
            sleep=sleep,
            clock=clock,
        )

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> Report:
        self.plan.artifacts.mkdir(parents=True, exist_ok=True)
        # Diagnostics from an earlier failed run must not be read as this run's.
        shutil.rmtree(self.plan.diagnostics, ignore_errors=True)
        first_failure: Check | None = None
        try:
            checks = map(self.step, self.plan.main())
            first_failure = next((check for check in checks if check.status == FAILED), None)
            if first_failure is not None and self.created:
                self._diagnose(first_failure)
        finally:
            cleanup_failure = self._cleanup()  # always runs, whatever failed before
            first_failure = first_failure or cleanup_failure
            paths = self.report.write(self.plan.artifacts)
            log.info(f"    report: {paths['markdown']} ({paths['junit']}, {paths['chart']})")
        if first_failure is not None:
            raise ChecksFailed(
                f"e2e check '{first_failure.name}' failed: {first_failure.detail}; report and "
                f"diagnostics are in {self.plan.artifacts}",
                self.report,
            )
        return self.report

    def _diagnose(self, failure: Check) -> None:
        for step in self.plan.diagnostics_steps():
            self.step(step)
        if self.report.sidecars:
            failure.detail += f"; {self.report.sidecars[0]}"
            if len(self.report.sidecars) > 1:
                failure.detail += f" (and {len(self.report.sidecars) - 1} more)"

    def _cleanup(self) -> Check | None:
        """Run every cleanup step this run may run; the first that failed."""
        failed: Check | None = None
        for step in self.plan.cleanup_steps():
            if (step.requires == CLUSTER and not self.created) or (
                step.requires == OWNED and not self.owned
            ):
                skipped = Check(step.name, SKIPPED, 0.0, "the cluster was not created by this run")
                self.report.checks.append(skipped)
                continue
            check = self.step(step)
            if check.status == FAILED and failed is None:
                failed = check
        return failed

    def step(self, step: Step) -> Check:
        check = Check(step.name)
        started = self.clock()
        details: list[str] = []
        try:
            with log.stage(step.name):
                for item in step.items:
                    note = self.execute(item)
                    if note:
                        details.append(note)
        except UserError as exc:
            check.status = FAILED
            details.append(str(exc))
        check.seconds = self.clock() - started
        check.detail = "; ".join(details)
        self.report.checks.append(check)
        return check

    def execute(self, item: Item) -> str | None:
        if isinstance(item, Action):
            return ACTIONS[item.do](self)
        return self.command(item)

    def command(self, cmd: Command) -> str | None:
        env = dict(cmd.env)
        if cmd.path_prepend:
            env["PATH"] = cmd.path_prepend + os.pathsep + os.environ.get("PATH", "")
        quiet_output = cmd.save is not None or cmd.expect is not None
        deadline = self.clock() + self.settings.wait_timeout
        attempts = 0
        while True:
            attempts += 1
            output = proc.run(
                cmd.argv,
                env=env or None,
                stream=not quiet_output,
                check=cmd.check and not cmd.poll,
                hint=cmd.hint,
                # Output that is parsed (JSON, manifests) must not carry stderr's warnings;
                # diagnostics (check=False) keep both streams, except the JSON ones, which
                # are parsed too (pods.json for the sidecar verdict).
                separate_stderr=cmd.expect is not None
                or (cmd.save is not None and (cmd.check or cmd.save.suffix == ".json")),
            )
            if cmd.save is not None:
                cmd.save.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(cmd.save, output)
            reason = cmd.expect(output) if cmd.expect else None
            if reason is None:
                if cmd.record is not None:
                    RECORDS[cmd.record](self.report, output.strip())
                return f"held after {attempts} tries" if cmd.poll and attempts > 1 else None
            if not cmd.poll or self.clock() >= deadline:
                waited = f" after {self.settings.wait_timeout}s" if cmd.poll else ""
                raise UserError(f"{reason}{waited}")
            self.sleep(POLL_SECONDS)

    # -- actions named by the plan ----------------------------------------------------------

    def fetch_kind(self) -> None:
        tools, row = self.plan.tools, self.plan.row
        if not tools.kind.is_file():
            download(kind_url(row, self.plan.arch), tools.kind, kind_sha256(row, self.plan.arch))

    def fetch_kubectl(self) -> None:
        tools, url = self.plan.tools, kubectl_url(self.plan.row, self.plan.arch)
        if not tools.kubectl.is_file():
            download(url, tools.kubectl, published_sha256(url + ".sha256"))

    def fetch_istio(self) -> None:
        ensure_istio(self.plan.tools, self.settings.istio_version, self.plan.arch)

    def claim_cluster(self) -> None:
        self.owned = True

    def cluster_created(self) -> None:
        self.created = True

    def derive_images(self) -> str:
        self.preload = preload_list(self.plan, self.plan.istio_manifest.read_text())
        atomic_write(self.plan.images_list, "".join(f"{image}\n" for image in self.preload))
        return f"{len(self.preload)} images: {', '.join(self.preload)}"

    def pull_images(self) -> str:
        pulled = images.pull(self.preload)
        return f"pulled {len(pulled)}, {len(self.preload) - len(pulled)} already present"

    def load_images(self) -> str:
        wanted = self.preload if self.settings.pull_image else [self.plan.image, *self.preload]
        fallbacks = []
        for image in wanted:
            note = images.load(
                self.plan.tools.kind,
                self.settings.cluster_name,
                image,
                self.plan.scratch,
                self.plan.platform,
            )
            if note:
                fallbacks.append(note)
        if fallbacks:
            self.report.notes.append(
                "kind load docker-image failed, so these were loaded as one-platform archives "
                f"(kind#3795): {'; '.join(fallbacks)}"
            )
        return f"loaded {len(wanted)} images" + (
            f", {len(fallbacks)} through docker image save + kind load image-archive"
            if fallbacks
            else ""
        )

    def diagnose_sidecars(self) -> str:
        pods = self.plan.diagnostics / "pods.json"
        found = sidecars.not_ready(pods.read_text() if pods.is_file() else "")
        atomic_write(self.plan.diagnostics / "sidecars.txt", "".join(f"{s}\n" for s in found))
        self.report.sidecars = found
        return "; ".join(found) or "every istio-proxy container is Ready"

    def write_kind_config(self) -> None:
        atomic_write(self.plan.kind_config, kind_config(self.settings.ingress_port))
        self.plan.kubeconfig.parent.mkdir(parents=True, exist_ok=True)

    def rewrite_injected(self) -> str:
        result = inject.rewrite(self.plan.injected.read_text())
        atomic_write(self.plan.rewritten, result.text)
        return (
            f"{result.sidecars} sidecars: {result.rewritten} rewritten to mosn, "
            f"{result.already_mosn} already named mosn"
        )

    # The scenarios and their verdicts are shared with the mesh check (ci/e2e/scenarios.py).

    def reach_ingress(self) -> str:
        return self.scenarios.reach_ingress()

    def no_rules(self) -> str:
        return self.scenarios.no_rules()

    def all_v1(self) -> str:
        return self.scenarios.all_v1()

    def fifty_v3(self) -> str:
        return self.scenarios.fifty_v3()

    def test_v2(self) -> str:
        return self.scenarios.test_v2()


# Each action's method, and each recorded field's setter: explicit, and complete (checked below).
ACTIONS: dict[Do, Callable[[Runner], str | None]] = {
    Do.FETCH_KIND: Runner.fetch_kind,
    Do.FETCH_KUBECTL: Runner.fetch_kubectl,
    Do.FETCH_ISTIO: Runner.fetch_istio,
    Do.CLAIM_CLUSTER: Runner.claim_cluster,
    Do.WRITE_KIND_CONFIG: Runner.write_kind_config,
    Do.CLUSTER_CREATED: Runner.cluster_created,
    Do.LOAD_IMAGES: Runner.load_images,
    Do.DERIVE_IMAGES: Runner.derive_images,
    Do.PULL_IMAGES: Runner.pull_images,
    Do.REWRITE_INJECTED: Runner.rewrite_injected,
    Do.REACH_INGRESS: Runner.reach_ingress,
    Do.NO_RULES: Runner.no_rules,
    Do.ALL_V1: Runner.all_v1,
    Do.FIFTY_V3: Runner.fifty_v3,
    Do.TEST_V2: Runner.test_v2,
    Do.DIAGNOSE_SIDECARS: Runner.diagnose_sidecars,
}
RECORDS: dict[Record, Callable[[Report, str], None]] = {
    Record.MOSN_VERSION: Report.keep_mosn_version,
}
if set(ACTIONS) != set(Do) or set(RECORDS) != set(Record):
    raise ImportError("ci/e2e/runner.py: ACTIONS and RECORDS must cover every Do and Record")


def kind_config(ingress_port: int) -> str:
    """One node; the gateway's pinned NodePort published on the host's loopback only."""
    config = {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "nodes": [
            {
                "role": "control-plane",
                "extraPortMappings": [
                    {
                        "containerPort": INGRESS_NODE_PORT,
                        "hostPort": ingress_port,
                        "listenAddress": "127.0.0.1",
                        "protocol": "TCP",
                    }
                ],
            }
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)
