"""How the mesh check applies Bookinfo's own rule files to istiod's folder, and how it reads
from MOSN's config dump that a rule has arrived (ci/mesh/istiod.py, ci/mesh/check.py)."""

from __future__ import annotations

import pytest
import yaml

from ci.errors import UserError
from ci.mesh.check import dump_routes, subset_cluster
from ci.mesh.istiod import ConfigFolder
from tests.e2e.conftest import UPSTREAM_ISTIO
from tests.helpers import tools


@pytest.fixture
def networking():
    if UPSTREAM_ISTIO is None:
        tools.need("istio upstream", "../shared/upstream/istio-1.10.6 not found")
    return UPSTREAM_ISTIO / "samples" / "bookinfo" / "networking"


def written(config: ConfigFolder) -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in config.folder.glob("*.yaml")}


def test_a_rule_file_is_applied_as_kubectl_would_in_namespace_default(networking, tmp_path):
    config = ConfigFolder(tmp_path / "config")
    applied = config.apply(networking / "virtual-service-all-v1.yaml")
    assert applied == [
        "virtualservice/productpage",
        "virtualservice/reviews",
        "virtualservice/ratings",
        "virtualservice/details",
    ]
    files = written(config)
    text = (networking / "virtual-service-all-v1.yaml").read_text()
    original = [d for d in yaml.safe_load_all(text) if d]
    for document in original:
        mine = files[f"VirtualService.{document['metadata']['name']}.yaml"]
        # The one change: the namespace kubectl would have given it.
        assert mine["metadata"].pop("namespace") == "default"
        assert mine == document
    # A later file replaces the object of the same kind and name, and only that one.
    config.apply(networking / "virtual-service-reviews-50-v3.yaml")
    assert len(written(config)) == 4
    assert config.routes("reviews") == [[("v1", 50), ("v3", 50)]]
    assert config.routes("productpage") == [[("v1", 100)]]


def test_the_gateway_keeps_port_80_unless_the_run_moved_it(networking, tmp_path):
    source = networking / "bookinfo-gateway.yaml"
    kept = ConfigFolder(tmp_path / "kept")
    kept.apply(source)
    assert written(kept)["Gateway.bookinfo-gateway.yaml"]["spec"]["servers"][0]["port"] == {
        "number": 80,
        "name": "http",
        "protocol": "HTTP",
    }
    moved = ConfigFolder(tmp_path / "moved", gateway_port=40123)
    moved.apply(source)
    files = written(moved)
    assert files["Gateway.bookinfo-gateway.yaml"]["spec"]["servers"][0]["port"]["number"] == 40123
    # The route to productpage:9080 is Bookinfo's own, moved port or not.
    route = files["VirtualService.bookinfo.yaml"]
    assert route == written(kept)["VirtualService.bookinfo.yaml"]
    original = list(yaml.safe_load_all(source.read_text()))[1]
    assert route["metadata"].pop("namespace") == "default" and route == original


@pytest.mark.parametrize(
    ("files", "routes"),
    [
        ((), [[("", 100)]]),
        (("destination-rule-all.yaml", "virtual-service-all-v1.yaml"), [[("v1", 100)]]),
        (("virtual-service-reviews-50-v3.yaml",), [[("v1", 50), ("v3", 50)]]),
        (("virtual-service-reviews-test-v2.yaml",), [[("v2", 100)], [("v1", 100)]]),
        (("virtual-service-reviews-v3.yaml",), [[("v3", 100)]]),
    ],
)
def test_what_each_rule_routes_reviews_to(networking, tmp_path, files, routes):
    config = ConfigFolder(tmp_path / "config")
    for name in files:
        config.apply(networking / name)
    assert config.routes("reviews") == routes


def test_the_subsets_of_the_destination_rule(networking, tmp_path):
    config = ConfigFolder(tmp_path / "config")
    assert config.subsets("reviews") == []
    config.apply(networking / "destination-rule-all.yaml")
    assert config.subsets("reviews") == ["v1", "v2", "v3"]
    assert subset_cluster("reviews", "v3") == "outbound|9080|v3|reviews.default.svc.cluster.local"


def test_a_file_that_is_not_yaml_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed\n")
    with pytest.raises(UserError, match="cannot read the rule file .*bad.yaml"):
        ConfigFolder(tmp_path / "config").apply(bad)


# The shape of MOSN v1.0.0's /api/v1/config_dump `routers` (recorded from the real MOSN under
# istiod 1.10.6 on 2026-12-04): one route config per port, virtual hosts with their domains.
def _dump(*routers: dict) -> dict:
    reviews = {
        "name": "reviews.default.svc.cluster.local:9080",
        "domains": ["reviews.default.svc.cluster.local", "reviews", "reviews:9080"],
        "routers": list(routers),
    }
    anything = {"name": "allow_any", "domains": ["*"], "routers": [_route("PassthroughCluster")]}
    return {
        "routers": {"9080": {"router_config_name": "9080", "virtual_hosts": [reviews, anything]}}
    }


def _route(cluster: str, headers: list | None = None) -> dict:
    match = {"prefix": "/", **({"headers": headers} if headers else {})}
    return {"match": match, "route": {"cluster_name": cluster, "timeout": "0s"}}


def test_routes_are_read_from_mosn_config_dump_as_from_the_rule():
    host = "reviews.default.svc.cluster.local"
    v1, v2, v3 = (subset_cluster("reviews", s) for s in ("v1", "v2", "v3"))
    assert dump_routes(_dump(_route("outbound|9080||" + host)), host, 9080) == [[("", 100)]]
    assert dump_routes(_dump(_route(v1)), host, 9080) == [[("v1", 100)]]
    weighted = {
        "match": {"prefix": "/"},
        "route": {
            "weighted_clusters": [
                {"cluster": {"name": v3, "weight": 50}},
                {"cluster": {"name": v1, "weight": 50}},
            ]
        },
    }
    assert dump_routes(_dump(weighted), host, 9080) == [[("v1", 50), ("v3", 50)]]
    jason = _route(v2, [{"name": "end-user", "value": "jason"}])
    assert dump_routes(_dump(jason, _route(v1)), host, 9080) == [[("v2", 100)], [("v1", 100)]]


def test_a_dump_without_the_route_is_none():
    assert dump_routes(None, "reviews.default.svc.cluster.local", 9080) is None
    assert dump_routes({"routers": {}}, "reviews.default.svc.cluster.local", 9080) is None
    assert dump_routes(_dump(_route("x")), "reviews.default.svc.cluster.local", 9081) is None
