"""Stand-in kind, kubectl, istioctl and docker for running the e2e runner without a cluster.

Invoked as `python3 e2e_tools.py TOOL ARGS...` by small wrappers installed where the runner
expects the real programs. Each call is logged (JSON lines in $STANDIN_DIR/calls.jsonl) and
answered with what the real tool prints on a healthy cluster. Applying a VirtualService
switches the productpage stand-in's routing (via $STANDIN_DIR/mode). $STANDIN_FAIL makes any
call whose command line contains it exit 1. Runs with `python -S` (stdlib only) to start fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

STATE = Path(os.environ["STANDIN_DIR"])
IMAGE = os.environ.get("STANDIN_IMAGE", "")
MODES = {
    "virtual-service-all-v1.yaml": "all-v1",
    "virtual-service-reviews-50-v3.yaml": os.environ.get("STANDIN_FIFTY_MODE", "50-v3"),
    "virtual-service-reviews-test-v2.yaml": "test-v2",
}
SHAPES = os.environ.get("STANDIN_SHAPES", "")


def pod(name: str, containers: list[str]) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {"name": c, "image": IMAGE if c == "istio-proxy" else f"app/{c}"}
                for c in containers
            ]
        },
        "status": {"containerStatuses": [{"name": c, "ready": True} for c in containers]},
    }


def main(tool: str, args: list[str]) -> int:
    with open(STATE / "calls.jsonl", "a") as log:
        log.write(json.dumps([tool, *args]) + "\n")
    line = " ".join(args)
    fail = os.environ.get("STANDIN_FAIL")
    if fail and fail in f"{tool} {line}":
        print(f"{tool}: stand-in failure for {fail!r}", file=sys.stderr)
        return 1
    if (tool == "kubectl" and "get" in args) or args[:1] == ["kube-inject"]:
        # Like the real tools: warnings go to stderr and must not reach parsed output.
        print("Warning: stand-in API deprecation notice", file=sys.stderr)
    if tool == "docker":
        print("sha256:" + "ab" * 32)
    elif tool == "kind":
        if args[:2] == ["get", "clusters"]:
            print(os.environ.get("STANDIN_EXISTING_CLUSTER") or "No kind clusters found.")
        elif args[:2] == ["create", "cluster"]:
            config = Path(args[args.index("--config") + 1])
            assert "extraPortMappings" in config.read_text()
            Path(args[args.index("--kubeconfig") + 1]).write_text("apiVersion: v1\nkind: Config\n")
            print("Creating cluster ...")
    elif tool == "istioctl":
        if args[0] == "kube-inject":
            from tests.helpers.e2e import INJECTED_BOOKINFO

            print(INJECTED_BOOKINFO)
        elif args[:2] == ["manifest", "apply"]:
            if "-y" not in args:
                print("Cancelled.")
                return 1
            print("Installation complete")
        elif args[:2] == ["manifest", "generate"]:
            print("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: istiod\n")
        else:
            print("NAME CDS LDS EDS RDS ISTIOD VERSION")
    elif tool == "kubectl":
        return kubectl(args)
    return 0


def kubectl(args: list[str]) -> int:
    rest = args[2:] if args[:1] == ["--kubeconfig"] else args
    if rest[:1] == ["-n"]:
        namespace, rest = rest[1], rest[2:]
    else:
        namespace = None
    verb = rest[0]
    if verb == "apply":
        target = Path(rest[rest.index("-f") + 1]).name
        if target in MODES:
            (STATE / "mode").write_text(MODES[target])
        print(f"applied {target}")
    elif verb == "get" and rest[1] == "pods" and "app=istio-ingressgateway" in rest:
        print(json.dumps({"items": [pod("istio-ingressgateway-x", ["istio-proxy"])]}))
    elif verb == "get" and rest[1] == "pods":
        deployments = os.environ["STANDIN_DEPLOYMENTS"].split(",")
        pods = [pod(f"{n}-x", [n.split("-")[0], "istio-proxy"]) for n in deployments]
        print(json.dumps({"items": pods}))
    elif verb == "get" and rest[1] == "services":
        items = [
            {"metadata": {"name": n}}
            for n in ("kubernetes", "details", "ratings", "reviews", "productpage")
        ]
        print(json.dumps({"items": items}))
    elif verb == "get" and rest[1] == "deployments,services,pods":
        print(json.dumps({"items": [{"kind": "Service", "metadata": {"name": "kubernetes"}}]}))
    elif verb == "get" and rest[1].startswith("crd,"):
        if "istio-left" in SHAPES:
            print(
                "customresourcedefinition.apiextensions.k8s.io/virtualservices.networking.istio.io"
            )
    elif verb == "get" and rest[1] == "namespaces":
        print("namespace/default\nnamespace/kube-system")
    elif verb == "exec":
        command = rest[rest.index("--") + 1 :]
        if command[-1] == "--version":
            print("envoy version 1.18" if "envoy-sidecars" in SHAPES else "mosn version v1.0.0")
        elif command[0] == "sh":
            print("/usr/local/bin/pilot-agent proxy sidecar")
            print("/usr/local/bin/mosn start -c /etc/istio/proxy/envoy-rev0.json")
        elif command[0] == "curl":
            from tests.helpers.e2e import productpage_html

            print(productpage_html("v1"))
    elif verb == "delete" and namespace is None and os.environ.get("NAMESPACE"):
        print("deleted (cleanup.sh)")
    else:
        print(f"kubectl {verb} ok")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main(sys.argv[1], sys.argv[2:]))
