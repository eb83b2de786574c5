"""Stand-in kind, kubectl, istioctl and docker for running the e2e runner without a cluster.

Invoked as `python3 e2e_tools.py TOOL ARGS...` by small wrappers installed where the runner
expects the real programs. Each call is logged (JSON lines in $STANDIN_DIR/calls.jsonl) and
answered with what the real tool prints on a healthy cluster. Applying a VirtualService
switches the productpage stand-in's routing (via $STANDIN_DIR/mode). $STANDIN_FAIL makes any
call whose command line contains it exit 1. Runs with `python -S` (stdlib only) to start fast.

The stand-in docker holds the image under test and whatever it "pulled" ($STANDIN_DIR/images).
With STANDIN_SHAPES containing `containerd-store`, `kind load docker-image` fails the way kind
v0.17.0 does on Docker 29's containerd image store (kind#3795, #4066: the ctr import error
below is the one those issues quote); `quiet-mosn` makes reviews-v2's sidecar a MOSN that
exited 0 three times, the way MOSN v1.0.0 ends when it fails to start.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

STATE = Path(os.environ.get("STANDIN_DIR", "."))
IMAGE = os.environ.get("STANDIN_IMAGE", "")
MODES = {
    "virtual-service-all-v1.yaml": "all-v1",
    "virtual-service-reviews-50-v3.yaml": os.environ.get("STANDIN_FIFTY_MODE", "50-v3"),
    "virtual-service-reviews-test-v2.yaml": "test-v2",
}
SHAPES = os.environ.get("STANDIN_SHAPES", "")
PULLED = STATE / "images"
CTR_ERROR = (
    'ERROR: failed to load image: command "docker exec --privileged -i mosn-proxyv2-control-plane'
    ' ctr --namespace=k8s.io images import --all-platforms --digests --snapshotter=overlayfs -"'
    " failed with error: exit status 1\nCommand Output: ctr: content digest sha256:"
    "82014a3cbf22d2e03382cd9b123f4151d956986e727340a466406a206408b7a2: not found"
)


def istio_manifest(proxy_image: str) -> str:
    """`istioctl manifest generate` reduced to what names images, in Istio 1.10.6's shapes:
    istiod's and the gateway's Deployments, and the injector ConfigMap whose `values` JSON
    holds the hub, tag and injected images (istio-discovery chart's configmap.yaml)."""
    values = {
        "global": {
            "hub": "docker.io/istio",
            "tag": "1.10.6",
            "proxy": {"image": proxy_image},
            "proxy_init": {"image": "proxyv2"},
        }
    }
    injector = json.dumps({"data": {"values": json.dumps(values, indent=2)}})[1:-1]
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: istiod
  namespace: istio-system
spec:
  template:
    spec:
      containers:
      - name: discovery
        image: "docker.io/istio/pilot:1.10.6"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: istio-ingressgateway
  namespace: istio-system
spec:
  template:
    spec:
      containers:
      - name: istio-proxy
        image: "{proxy_image}"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: istio-sidecar-injector
  namespace: istio-system
{injector.replace('"data": ', "data: ")}
"""


def has_image(image: str) -> bool:
    pulled = PULLED.read_text().split() if PULLED.exists() else []
    return image == IMAGE or image in pulled


def docker(args: list[str]) -> int:
    if args[:2] == ["image", "inspect"]:
        if not has_image(args[-1]):
            print(f"Error: No such image: {args[-1]}", file=sys.stderr)
            return 1
        print("sha256:" + "ab" * 32)
    elif args[:1] == ["pull"]:
        with open(PULLED, "a") as handle:
            handle.write(args[1] + "\n")
        print(f"{args[1]}: Pull complete")
    elif args[:2] == ["image", "save"]:
        Path(args[args.index("--output") + 1]).write_bytes(b"stand-in image archive")
    elif args[:1] == ["run"]:
        print("mosn version v1.0.0")
    else:
        print("sha256:" + "ab" * 32)
    return 0


def kind(args: list[str]) -> int:
    if args[:2] == ["get", "clusters"]:
        print(os.environ.get("STANDIN_EXISTING_CLUSTER") or "No kind clusters found.")
    elif args[:2] == ["create", "cluster"]:
        config = Path(args[args.index("--config") + 1])
        assert "extraPortMappings" in config.read_text()
        Path(args[args.index("--kubeconfig") + 1]).write_text("apiVersion: v1\nkind: Config\n")
        print("Creating cluster ...")
    elif args[:2] == ["load", "docker-image"]:
        if not has_image(args[-1]):
            print(f"ERROR: image: {args[-1]!r} not present locally", file=sys.stderr)
            return 1
        if "containerd-store" in SHAPES:
            print(CTR_ERROR, file=sys.stderr)
            return 1
    elif args[:2] == ["load", "image-archive"]:
        archive = Path(args[-1])
        if not archive.is_file():
            print(f"ERROR: failed to open archive {archive}", file=sys.stderr)
            return 1
        with open(STATE / "archives.jsonl", "a") as handle:
            handle.write(json.dumps([str(archive), archive.read_text()]) + "\n")
    return 0


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
        return docker(args)
    elif tool == "kind":
        return kind(args)
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
            proxy = next(
                a.split("=", 1)[1] for a in args if a.startswith("values.global.proxy.image=")
            )
            print(istio_manifest(proxy))
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
    elif verb == "get" and rest[1] == "serviceaccount":
        print("serviceaccount/default")
    elif verb == "get" and rest[1:3] == ["pods", "-A"]:
        deployments = os.environ["STANDIN_DEPLOYMENTS"].split(",")
        pods = [pod(f"{n}-x", [n.split("-")[0], "istio-proxy"]) for n in deployments]
        if "quiet-mosn" in SHAPES:
            # Rebuilt after each restart: pilot-agent restarts MOSN, MOSN "completes".
            quiet = next(p for p in pods if p["metadata"]["name"] == "reviews-v2-x")
            completed = {"reason": "Completed", "exitCode": 0}
            quiet["status"]["containerStatuses"][1] = {
                "name": "istio-proxy",
                "ready": False,
                "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                "lastState": {"terminated": completed},
            }
        print(json.dumps({"items": pods}))
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
