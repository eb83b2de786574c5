"""Rewriting `istioctl kube-inject` output so every sidecar names MOSN."""

from __future__ import annotations

import json

import pytest
import yaml

from ci.e2e import inject
from ci.errors import UserError
from tests.helpers.e2e import INJECTED_BOOKINFO


def _containers(text: str) -> dict[tuple[str, str], dict]:
    out = {}
    for doc in yaml.safe_load_all(text):
        if doc and doc.get("kind") == "Deployment":
            spec = doc["spec"]["template"]["spec"]
            for c in spec["containers"] + spec.get("initContainers", []):
                out[(doc["metadata"]["name"], c["name"])] = c
    return out


def _proxy_config(container: dict) -> dict:
    value = next(e["value"] for e in container["env"] if e["name"] == "PROXY_CONFIG")
    return yaml.safe_load(value)


def test_rewrite_counts_and_changes_only_what_still_named_envoy():
    result = inject.rewrite(INJECTED_BOOKINFO)
    assert (result.sidecars, result.rewritten, result.already_mosn) == (6, 5, 1)
    assert result.changes == [
        "Deployment/ratings-v1: PROXY_CONFIG binaryPath",
        "Deployment/reviews-v1: PROXY_CONFIG binaryPath",
        "Deployment/reviews-v2: PROXY_CONFIG binaryPath",
        "Deployment/reviews-v3: args --binaryPath",
        "Deployment/productpage-v1: PROXY_CONFIG added",
        "Deployment/productpage-v1: args --binaryPath",
    ]


def test_every_sidecar_names_mosn_and_keeps_its_other_settings():
    after = _containers(inject.rewrite(INJECTED_BOOKINFO).text)
    sidecars = {k: c for k, c in after.items() if k[1] == "istio-proxy"}
    assert len(sidecars) == 6
    for container in sidecars.values():
        assert _proxy_config(container)["binaryPath"] == "/usr/local/bin/mosn"
        assert "/usr/local/bin/envoy" not in json.dumps(container)
    assert _proxy_config(sidecars[("reviews-v2", "istio-proxy")])["concurrency"] == 2
    assert _proxy_config(sidecars[("reviews-v1", "istio-proxy")])["discoveryAddress"] == (
        "istiod.istio-system.svc:15012"
    )
    assert sidecars[("reviews-v3", "istio-proxy")]["args"][-2:] == [
        "--binaryPath",
        "/usr/local/bin/mosn",
    ]
    assert sidecars[("productpage-v1", "istio-proxy")]["args"][-1] == (
        "--binaryPath=/usr/local/bin/mosn"
    )


def test_json_proxy_config_stays_json_and_yaml_stays_yaml():
    after = _containers(inject.rewrite(INJECTED_BOOKINFO).text)

    def value(name):
        env = after[(name, "istio-proxy")]["env"]
        return next(e["value"] for e in env if e["name"] == "PROXY_CONFIG")

    assert json.loads(value("ratings-v1")) == {
        "binaryPath": "/usr/local/bin/mosn",
        "concurrency": 2,
    }
    assert value("reviews-v2").startswith("binaryPath: /usr/local/bin/mosn")


def test_non_sidecar_containers_and_other_documents_are_untouched():
    before = _containers(INJECTED_BOOKINFO)
    result = inject.rewrite(INJECTED_BOOKINFO)
    after = _containers(result.text)
    for key, container in before.items():
        if key[1] != "istio-proxy":
            assert after[key] == container, key
    # The details app's own PROXY_CONFIG names envoy and is not a sidecar: left alone.
    assert _proxy_config(after[("details-v1", "details")])["binaryPath"] == "/usr/local/bin/envoy"
    docs_before = [d for d in yaml.safe_load_all(INJECTED_BOOKINFO)]
    docs_after = [d for d in yaml.safe_load_all(result.text)]
    assert [d["kind"] for d in docs_after] == [d["kind"] for d in docs_before]
    assert docs_after[0] == docs_before[0] and docs_after[1] == docs_before[1]


def test_rewriting_twice_changes_nothing_more():
    once = inject.rewrite(INJECTED_BOOKINFO)
    twice = inject.rewrite(once.text)
    assert (twice.sidecars, twice.rewritten) == (6, 0)
    assert twice.text == once.text


def test_a_manifest_without_sidecars_means_injection_did_not_happen():
    with pytest.raises(UserError, match="has no istio-proxy containers"):
        inject.rewrite("apiVersion: v1\nkind: Service\nmetadata:\n  name: details\n")


def test_invalid_yaml_is_a_user_error():
    with pytest.raises(UserError, match="the injected manifest is not valid YAML"):
        inject.rewrite("kind: [unclosed\n")


def test_a_sidecar_naming_envoy_elsewhere_is_refused():
    manifest = INJECTED_BOOKINFO.replace(
        "- name: ISTIO_META_CLUSTER_ID\n          value: Kubernetes",
        "- name: ENVOY_BIN\n          value: /usr/local/bin/envoy",
        1,
    )
    with pytest.raises(
        UserError, match="Deployment/details-v1: the istio-proxy container still names"
    ):
        inject.rewrite(manifest)


# A sidecar as real `istioctl kube-inject` wrote it: istioctl built from Istio 1.10.6
# (fd053c6165d21105d66dac6e3d0649db2dde5b86, 2021-11-24), run on 2026-12-01 offline on
# samples/bookinfo/platform/kube/bookinfo.yaml with --injectConfigFile, --meshConfigFile and
# --valuesFile from `istioctl manifest generate` with the plan's --set flags. Its 6 sidecars
# all had `PROXY_CONFIG: |` + `{"binaryPath":"/usr/local/bin/mosn"}`; generated without the
# binaryPath flag, `{}`. The proxy image appeared verbatim; istio-init (not a sidecar) kept
# Istio's own proxyv2 image and named no binary. Shortened to the fields the rewrite reads.
REAL_SHAPE = """apiVersion: apps/v1
kind: Deployment
metadata:
  creationTimestamp: null
  labels: {{app: ratings, version: v1}}
  name: ratings-v1
spec:
  template:
    metadata:
      annotations:
        sidecar.istio.io/status: '{{"initContainers":["istio-init"],"containers":["istio-proxy"]}}'
    spec:
      containers:
      - image: docker.io/istio/examples-bookinfo-ratings-v1:1.16.2
        name: ratings
      - args:
        - proxy
        - sidecar
        - --domain
        - $(POD_NAMESPACE).svc.cluster.local
        - --serviceCluster
        - ratings.$(POD_NAMESPACE)
        - --proxyLogLevel=warning
        - --proxyComponentLogLevel=misc:error
        - --log_output_level=default:info
        - --concurrency
        - "2"
        env:
        - name: PROXY_CONFIG
          value: |
            {proxy_config}
        - name: ISTIO_META_CLUSTER_ID
          value: Kubernetes
        image: registry.example/mesh/proxyv2:v1.0.0-1.10.6
        name: istio-proxy
        volumeMounts:
        - mountPath: /etc/istio/proxy
          name: istio-envoy
      initContainers:
      - args: [istio-iptables, -p, "15001", -z, "15006", -u, "1337", -m, REDIRECT]
        image: gcr.io/istio-testing/proxyv2:latest
        name: istio-init
      volumes:
      - emptyDir: {{medium: Memory}}
        name: istio-envoy
"""


def test_real_kube_inject_output_after_a_mosn_install_is_left_as_it_is():
    text = REAL_SHAPE.format(proxy_config='{"binaryPath":"/usr/local/bin/mosn"}')
    result = inject.rewrite(text)
    assert (result.sidecars, result.rewritten, result.changes) == (1, 0, [])
    assert _containers(result.text) == _containers(text)


def test_real_kube_inject_output_without_binary_path_gets_mosn_in_the_same_json_form():
    result = inject.rewrite(REAL_SHAPE.format(proxy_config="{}"))
    assert result.changes == ["Deployment/ratings-v1: PROXY_CONFIG binaryPath"]
    after = _containers(result.text)
    sidecar = after[("ratings-v1", "istio-proxy")]
    value = next(e["value"] for e in sidecar["env"] if e["name"] == "PROXY_CONFIG")
    assert json.loads(value) == {"binaryPath": "/usr/local/bin/mosn"}
    assert sidecar["image"] == "registry.example/mesh/proxyv2:v1.0.0-1.10.6"
    assert after[("ratings-v1", "istio-init")]["image"] == "gcr.io/istio-testing/proxyv2:latest"
