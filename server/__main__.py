"""`python -m server --root DIR --bind HOST:PORT [...]`: the artifact server under gunicorn."""

from __future__ import annotations

import sys

from ci.errors import UserError
from server.config import from_args
from server.serve import serve, stop_and_report


def main(argv: list[str] | None = None) -> int:
    try:
        config, options, stop_requested = from_args(sys.argv[1:] if argv is None else argv)
        if stop_requested:
            stop_and_report(config.root)
        else:
            serve(config, options)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
