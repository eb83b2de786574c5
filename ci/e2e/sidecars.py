"""Which pod's sidecar is not Ready, and why, in one sentence per pod (read from `kubectl get pods -o json`).

MOSN v1.0.0 ignores its own start errors (cmd/mosn/main/mosn.go: `_ = app.Run(os.Args)`), so a
MOSN that cannot start exits 0: the sidecar shows as terminated "Completed", exit 0, instead
of crashing, and `kubectl rollout status` only says it timed out. The container's state,
restart count and last termination are what tell the two apart.
"""

from __future__ import annotations

import json

SIDECAR = "istio-proxy"
QUIET_EXIT_HINT = (
    "MOSN exits 0 when it fails to start (v1.0.0 ignores its start errors): read its log "
    "files and pilot-agent's log in the diagnostics"
)


def _state(state: dict) -> str:
    for kind in ("waiting", "terminated", "running"):
        if kind in (state or {}):
            detail = state[kind] or {}
            parts = [str(detail[key]) for key in ("reason",) if detail.get(key)]
            if kind == "terminated" and "exitCode" in detail:
                parts.append(f"exit {detail['exitCode']}")
            message = str(detail.get("message") or "").strip().splitlines()
            if message:
                parts.append(message[0][:160])
            return kind + (f" ({', '.join(parts)})" if parts else "")
    return "no state reported"


def describe(status: dict) -> str:
    """One container's state, restart count and last termination, e.g. for the report."""
    text = f"{status.get('name')}: {_state(status.get('state') or {})}"
    text += f", {status.get('restartCount', 0)} restarts"
    last = (status.get("lastState") or {}).get("terminated")
    if last:
        text += f", last {_state({'terminated': last})}"
    return text


def _exited_zero(status: dict) -> bool:
    for state in (status.get("state") or {}, (status.get("lastState") or {})):
        terminated = state.get("terminated") or {}
        if terminated and terminated.get("exitCode") == 0:
            return True
    return False


def not_ready(pods_json: str, container: str = SIDECAR) -> list[str]:
    """A sentence for each pod whose `container` is not Ready; [] when all are (or no pods)."""
    try:
        data = json.loads(pods_json)
    except ValueError:
        return ["kubectl did not print a pod list, so the sidecars' state is unknown"]
    found = []
    for pod in data.get("items", []) if isinstance(data, dict) else []:
        meta = pod.get("metadata") or {}
        where = f"pod {meta.get('namespace', 'default')}/{meta.get('name')}"
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        sidecars = [s for s in statuses if s.get("name") == container]
        declared = [c.get("name") for c in (pod.get("spec") or {}).get("containers", [])]
        if container not in declared:
            continue
        if not sidecars:
            phase = (pod.get("status") or {}).get("phase", "unknown phase")
            found.append(f"{where}: {container} has no status yet ({phase})")
            continue
        status = sidecars[0]
        if status.get("ready"):
            continue
        sentence = f"{where}: {container} not Ready: {describe(status).split(': ', 1)[1]}"
        if _exited_zero(status):
            sentence += f"; {QUIET_EXIT_HINT}"
        found.append(sentence)
    return found
