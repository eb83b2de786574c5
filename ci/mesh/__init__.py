"""`invoke mesh`: prove a MOSN build against Istio's real control plane on one machine.

istiod (pilot-discovery, file config, CA off) serves xDS built from ServiceEntries and
Bookinfo's own rule files; MOSN runs as productpage's sidecar (through pilot-agent when one is
available) and as the ingress gateway; Bookinfo stand-ins answer on loopback addresses. The
scenarios and their verdicts are the kind job's (ci/e2e).

ci/mesh/binaries.py finds or builds pilot-discovery and pilot-agent.
"""
