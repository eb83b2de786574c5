"""`python -m server --root DIR --bind HOST:PORT [...]`: the artifact server under gunicorn."""

from __future__ import annotations

import sys

from ci.errors import UserError
from server.config import from_args
from server.serve import serve, stop


def main(argv: list[str] | None = None) -> int:
    try:
        config, options, stop_requested = from_args(sys.argv[1:] if argv is None else argv)
        if stop_requested:
            pid = stop(config.root)
            print(
                f"stopped the server from {config.root} (pid {pid})"
                if pid
                else f"no server was running from {config.root}"
            )
            return 0
        serve(config, options)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
