"""What each optional part of the tool needs: pyproject.toml's extras and the modules in them.

The core (invoke, pyyaml, requests) builds MOSN and publishes to an artifact server that is
already running. The rest comes by extra, so that an S3-only job installs no web server and
no Docker SDK. A part whose extra is missing says so in one line, naming the extra, instead
of failing with an ImportError somewhere inside.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from ci.errors import UserError

# Distribution -> the module it provides (what find_spec can look for). pyproject.toml's
# dependencies and extras name the same distributions (a test checks it).
CORE = {"invoke": "invoke", "pyyaml": "yaml", "requests": "requests"}
EXTRAS = {
    # The bundled artifact server: `invoke serve`, and a publish that starts it. gunicorn's
    # gevent worker imports packaging; /-/metrics is prometheus_client's.
    "server": {
        "flask": "flask",
        "gunicorn": "gunicorn",
        "gevent": "gevent",
        "packaging": "packaging",
        "prometheus-client": "prometheus_client",
    },
    "s3": {"boto3": "boto3"},
    # The Docker SDK: `invoke image` and `invoke build --in-docker`.
    "image": {"docker": "docker"},
}


def missing(modules: dict[str, str]) -> list[str]:
    """The distributions whose module cannot be imported."""
    return [dist for dist, module in modules.items() if find_spec(module) is None]


def install_hint(extra: str) -> str:
    """How to install `extra`: from this checkout when the code runs from one, else by name."""
    checkout = Path(__file__).resolve().parent.parent
    where = str(checkout) if (checkout / "pyproject.toml").is_file() else "mosn-proxyv2"
    return f"pip install '{where}[{extra}]'"


def require(extra: str, needed_by: str) -> None:
    """Raise one UserError when `extra` is not installed; `needed_by` says what needs it."""
    gone = missing(EXTRAS[extra])
    if gone:
        raise UserError(
            f"{needed_by} needs the [{extra}] extra ({', '.join(gone)} not installed);"
            f" install it: {install_hint(extra)}"
        )
