"""`python -m server --root DIR --bind HOST:PORT [...]`: the artifact server under gunicorn."""

from __future__ import annotations

import sys

from server.background import stop_and_report
from server.config import from_args
from server.errors import ServerError
from server.serve import serve


def main(argv: list[str] | None = None) -> int:
    try:
        config, options, stop_requested = from_args(sys.argv[1:] if argv is None else argv)
        if stop_requested:
            stop_and_report(config.root)
        else:
            serve(config, options)
    except ServerError as exc:
        if exc.detail:
            print(exc.detail, file=sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
