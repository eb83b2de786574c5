"""HTTP routes: the artifact namespace (`/<path>`) and the server's own (`/-/...`)."""

from __future__ import annotations

import hmac
import re
from datetime import datetime, timezone
from urllib.parse import quote, urlencode

from flask import Blueprint, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import is_resource_modified
from werkzeug.routing import BaseConverter
from werkzeug.wrappers import Response
from werkzeug.wsgi import wrap_file

from server import front, openapi
from server.config import ServerConfig
from server.fastpath import (
    INLINE_LIMIT,
    SEND_BUFFER,
    cache_for,
    download_headers,
    redirect_headers,
)
from server.headers import CHECKSUM_HEADER
from server.metrics import Metrics
from server.ranges import Unsatisfiable, effective_range
from server.store import (
    Artifact,
    ChecksumMismatch,
    ClientDisconnected,
    Conflict,
    DiskFull,
    InvalidPath,
    NotFound,
    Store,
    StoreError,
    TooLarge,
)

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
WRITE_METHODS = ("PUT", "DELETE")
LIST_LIMIT = 1000
MAX_LIST_LIMIT = 10_000
READ_ONLY_ALLOW = "GET, HEAD, OPTIONS"

artifacts = Blueprint("artifacts", __name__)
internal = Blueprint("internal", __name__, url_prefix="/-")


class AnyPath(BaseConverter):
    """Everything after the first slash, unchanged (newlines too): the store, not the router,
    judges paths. Not the root and not the server's own `/-/` namespace, which have routes
    of their own that cannot be written (and OPTIONS says so)."""

    regex = r"(?!-(?:/|$))(?s:.+)"
    part_isolating = False
    weight = 300


# What each of the store's refusals is in HTTP: the status, and the API's reason code.
STORE_ERRORS: dict[type[StoreError], tuple[int, str]] = {
    StoreError: (400, "bad_request"),
    InvalidPath: (400, "bad_path"),
    NotFound: (404, "not_found"),
    Conflict: (409, "conflict"),
    TooLarge: (413, "too_large"),
    ChecksumMismatch: (400, "checksum_mismatch"),
    ClientDisconnected: (400, "client_disconnected"),
    DiskFull: (507, "disk_full"),
}


def store_error_status(exc: StoreError) -> tuple[int, str]:
    return next(STORE_ERRORS[kind] for kind in type(exc).__mro__ if kind in STORE_ERRORS)


class Refused(Exception):
    """A request refused before it reaches the store (auth, headers, mode)."""

    def __init__(self, status: int, reason: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.headers = headers or {}


def _config() -> ServerConfig:
    return current_app.config["ARTIFACT_SERVER"]


def _store() -> Store:
    return current_app.extensions["artifact_store"]


def _metrics() -> Metrics:
    return current_app.extensions["artifact_metrics"]


# -- auth ------------------------------------------------------------------------------------


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _matches_any(given: str, tokens) -> bool:
    # Compare against every token, never stopping early, so timing says nothing about which
    # token (or how much of one) matched.
    given_bytes = given.encode("utf-8", "surrogateescape")
    found = False
    for token in tokens:
        found |= hmac.compare_digest(given_bytes, token.encode("utf-8", "surrogateescape"))
    return found


WRITE_UNAUTHORIZED = "a write needs 'Authorization: Bearer <token>'"
WRITE_FORBIDDEN = "the token is not valid for writes"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="artifacts"'}


def require_write() -> None:
    config = _config()
    if config.read_only:
        raise Refused(
            405, "read_only", "this server is read-only; writes are refused", {"Allow": "GET, HEAD"}
        )
    given = _bearer()
    if given is None:
        raise Refused(401, "unauthorized", WRITE_UNAUTHORIZED, _CHALLENGE)
    if not _matches_any(given, config.tokens):
        raise Refused(403, "forbidden", WRITE_FORBIDDEN)


def require_read() -> None:
    config = _config()
    if config.anonymous_reads:
        return
    given = _bearer()
    if given is None:
        raise Refused(
            401, "unauthorized", "reads need 'Authorization: Bearer <read token>'", _CHALLENGE
        )
    if not _matches_any(given, (config.read_token, *config.tokens)):
        raise Refused(403, "forbidden", "the token is not valid for reads")


# -- responses -------------------------------------------------------------------------------


def artifact_url(path: str) -> str:
    return request.host_url + quote(path)


def artifact_json(artifact: Artifact) -> dict:
    return {
        "path": artifact.path,
        "size": artifact.size,
        "sha256": artifact.sha256,
        "modified": iso_time(artifact.modified),
        "url": artifact_url(artifact.path),
    }


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def error_response(status: int, reason: str, message: str, headers: dict | None = None) -> Response:
    if _browser():
        response = Response(
            render_template("error.html", status=status, message=message, path=request.path),
            mimetype="text/html",
        )
    else:
        response = jsonify({"error": message, "reason": reason, "status": status})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _browser() -> bool:
    """A reader that names text/html itself (a browser), not one that takes anything (*/*,
    as curl and HTTP libraries do): API clients keep their JSON errors."""
    return request.method in ("GET", "HEAD") and any(
        value == "text/html" and quality > 0 for value, quality in request.accept_mimetypes
    )


def human_size(size: int) -> str:
    """13 B, 1.5 KiB, 64.0 MiB: the browse page's sizes (the JSON keeps bytes)."""
    if size < 1024:
        return f"{size} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"


def listing_time(iso: str) -> str:
    """`2026-12-04T14:03:05Z` -> `2026-12-04 14:03` (UTC, said in the column head)."""
    return iso[:16].replace("T", " ")


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


# -- artifact namespace ----------------------------------------------------------------------


@artifacts.route("/", defaults={"path": ""}, methods=["GET", "HEAD"])
@artifacts.route("/<anypath:path>", methods=["GET", "HEAD", "PUT", "DELETE"])
def artifact(path: str):
    # The router collapses leading slashes; the raw PATH_INFO decides, so `//etc/passwd` is
    # judged as the absolute path it is.
    path = _raw_path()
    if request.method == "PUT":
        return upload(path)
    if request.method == "DELETE":
        return remove(path)
    require_read()
    if path == "" or path.endswith("/") or _store().is_directory(path):
        return browse(path)
    return download(path)


def _raw_path() -> str:
    raw = request.environ.get("PATH_INFO", "")
    try:
        # WSGI carries the path as latin-1 code points of the original bytes.
        decoded = raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise Refused(400, "bad_path", "path is not valid UTF-8") from None
    return decoded[1:] if decoded.startswith("/") else decoded


def download(path: str) -> Response:
    opened = _store().open(path)
    assert opened is not None  # rehash=True: a stale sidecar is rebuilt, never None
    handle, found = opened
    headers = download_headers(found)
    environ = {k: v for k, v in request.environ.items() if k not in ("HTTP_RANGE", "HTTP_IF_RANGE")}
    # The conditionals decide first: a client that has these bytes gets its 304 (or 412)
    # whatever range it asked for; werkzeug gets only a range judged by server.ranges.
    modified = is_resource_modified(
        environ, f'"{found.sha256}"', None, dict(headers)["Last-Modified"]
    )
    wanted = None
    if modified:
        try:
            wanted = effective_range(request.environ, found)
        except Unsatisfiable:
            handle.close()
            return error_response(
                416,
                "range_not_satisfiable",
                f"the range is outside the artifact's {found.size} bytes",
                {"Content-Range": f"bytes */{found.size}"},
            )
        if wanted is not None:
            environ["HTTP_RANGE"] = wanted
        accelerated = _accelerated(handle, found, wanted)
        if accelerated is not None:
            handle.close()
            return accelerated
    response = Response(
        wrap_file(request.environ, handle, SEND_BUFFER), headers=headers, direct_passthrough=True
    )
    response = response.make_conditional(environ, accept_ranges=True, complete_length=found.size)
    if _config().front and response.status_code == 200 and found.size <= INLINE_LIMIT:
        response.headers.extend(cache_for(_config().front_cache))
    return response


def _accelerated(handle, found: Artifact, wanted: str | None) -> Response | None:
    """Behind the front, a large download nginx sends from the artifact's blob: the whole
    file, or the one range judged above (nginx reads the client's own Range header, so only
    a plain one)."""
    if not _config().front or found.size <= INLINE_LIMIT:
        return None
    if "HTTP_IF_MATCH" in request.environ or "HTTP_IF_UNMODIFIED_SINCE" in request.environ:
        return None  # nginx would judge these against validators of its own
    range_header = request.environ["HTTP_RANGE"] if wanted else None
    headers = redirect_headers(_store(), handle, found, range_header, _config().front_cache)
    return None if headers is None else Response(headers=headers)


def authorize_write():
    """Behind the front only (clients get nginx's 404 for it): nginx's auth_request for a PUT/DELETE, before it reads (or invites) the body: 204 when
    the token may write, else the 401/403 the write itself would get."""
    if request.headers.get("X-Original-Method") not in WRITE_METHODS or _config().read_only:
        return Response(status=204)  # the request itself gets its answer (405) from the app
    try:
        require_write()
    except Refused as exc:
        _metrics().rejected(exc.reason)
        raise
    return Response(status=204)


def browse(path: str):
    entries = _store().entries(path)
    here = path.strip("/")
    listing = {
        "path": f"{here}/" if here else "",
        "directories": [
            {"name": e.name, "path": e.path + "/", "url": artifact_url(e.path) + "/"}
            for e in entries
            if e.artifact is None
        ],
        "artifacts": [
            {"name": e.name, **artifact_json(e.artifact)} for e in entries if e.artifact is not None
        ],
    }
    if _wants_json():
        return jsonify(listing)
    crumbs = []
    walked = ""
    for part in here.split("/") if here else []:
        walked += part + "/"
        crumbs.append((part, "/" + quote(walked)))
    return render_template("browse.html", listing=listing, crumbs=crumbs, quote=quote)


def upload(path: str):
    require_write()
    expected = request.headers.get(CHECKSUM_HEADER)
    if expected is not None and not _SHA256.match(expected.strip()):
        raise Refused(
            400, "bad_request", f"{CHECKSUM_HEADER} must be 64 hex digits (the body's sha256)"
        )
    chunked = "chunked" in request.environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    length = request.content_length
    if length is None and not chunked:
        raise Refused(
            411, "length_required", "send Content-Length (or a chunked body) with the upload"
        )
    stored, created = _store().put(
        path,
        request.stream,
        content_length=None if chunked else length,
        expected_sha256=expected,
    )
    _metrics().bytes_in(stored.size)
    body = {
        "path": stored.path,
        "size": stored.size,
        "sha256": stored.sha256,
        "url": artifact_url(stored.path),
        "created": created,
    }
    response = jsonify(body)
    response.status_code = 201 if created else 200
    if created:
        response.headers["Location"] = body["url"]
    response.set_etag(stored.sha256)
    return response


def remove(path: str):
    require_write()
    _store().delete(path)
    return Response(status=204)


# -- the server's own namespace --------------------------------------------------------------


@internal.route("/healthz", methods=["GET", "HEAD"])
def healthz():
    config = _config()
    return jsonify({"status": "ok", "read_only": config.read_only})


@internal.route("/metrics", methods=["GET", "HEAD"])
def metrics():
    require_read()
    return Response(_metrics().render(), mimetype="text/plain; version=0.0.4")


@internal.route("/api/artifacts", methods=["GET", "HEAD"])
def list_artifacts():
    """One page of the listing; `Link: <...>; rel="next"` (and X-Next-Cursor) when more follow."""
    require_read()
    prefix = request.args.get("prefix", "")
    cursor = request.args.get("cursor") or None
    text = request.args.get("limit", str(LIST_LIMIT))
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIST_LIMIT:
        raise Refused(
            400, "bad_request", f"limit must be a whole number from 1 to {MAX_LIST_LIMIT}"
        )
    limit = int(text)
    page, more = _store().walk(prefix, after=cursor, limit=limit)
    response = jsonify([artifact_json(a) for a in page])
    if more:
        following = page[-1].path
        query = urlencode({"prefix": prefix, "limit": limit, "cursor": following})
        response.headers["Link"] = f'<{request.base_url}?{query}>; rel="next"'
        response.headers["X-Next-Cursor"] = following
    return response


@internal.route("/openapi.json", methods=["GET", "HEAD"])
def openapi_document():
    return jsonify(openapi.document(request.host_url.rstrip("/")))


@internal.route("/<anypath:rest>", methods=["GET", "HEAD"])
def internal_unknown(rest: str):
    return error_response(404, "not_found", f"no endpoint /-/{rest}; see /-/openapi.json")


# -- wiring ----------------------------------------------------------------------------------

# The whole app: both namespaces, and what every answer gets (registered app-wide, since a
# request no route matches, a 405 say, belongs to no blueprint).
bp = Blueprint("server", __name__)
bp.register_blueprint(internal)
bp.register_blueprint(artifacts)
bp.add_app_template_filter(human_size)
bp.add_app_template_filter(listing_time)


@bp.record
def _behind_the_front(state) -> None:
    # nginx's auth_request target exists only behind the front (others get the 404 of /-/).
    if state.app.config["ARTIFACT_SERVER"].front:
        state.app.add_url_rule(front.AUTHORIZE, "authorize_write", authorize_write, methods=["GET"])


def _count_rejection(reason: str) -> None:
    if request.method in WRITE_METHODS:
        _metrics().rejected(reason)


@bp.app_errorhandler(StoreError)
def store_error(exc: StoreError):
    status, reason = store_error_status(exc)
    _count_rejection(reason)
    return error_response(status, reason, exc.message)


@bp.app_errorhandler(Refused)
def refused(exc: Refused):
    _count_rejection(exc.reason)
    return error_response(exc.status, exc.reason, exc.message, exc.headers)


@bp.app_errorhandler(HTTPException)
def http_error(exc: HTTPException):
    reason = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        exc.code or 500, "bad_request"
    )
    _count_rejection(reason)
    headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
    return error_response(exc.code or 500, reason, exc.description or exc.name, headers)


@bp.after_app_request
def count(response: Response) -> Response:
    metrics = _metrics()
    metrics.request(response.status_code)
    if request.method != "HEAD" and response.status_code not in (204, 304):
        metrics.bytes_out(response.content_length or 0)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.method == "OPTIONS" and _config().read_only:
        response.headers["Allow"] = READ_ONLY_ALLOW
    return response
