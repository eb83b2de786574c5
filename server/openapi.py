"""The OpenAPI 3 description of the whole HTTP API, served at /-/openapi.json.

tests/server/test_openapi.py keeps it true: every Flask route is described here, and
schemathesis checks live responses against these schemas and status codes.
"""

from __future__ import annotations

from server import paths
from server.headers import CHECKSUM_HEADER

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    text = {
        400: "bad path or header, checksum mismatch, or the client went away mid-body",
        401: "no bearer token (see WWW-Authenticate)",
        403: "wrong token",
        404: "no such artifact or directory",
        405: "the server is read-only",
        409: "different bytes already stored and overwrite is denied, or the path collides with a directory",
        411: "neither Content-Length nor a chunked body",
        413: "the upload is over the size limit",
        416: "the Range is outside the artifact",
        507: "the server's disk is full; nothing was stored",
    }
    return {str(code): _json(_ERROR, text[code]) for code in codes}


_PATH_PARAM = {
    "name": "path",
    "in": "path",
    "required": True,
    "description": (
        "Artifact path relative to the root, segments separated by '/'. Refused with 400: '..', "
        "'.', empty segments, names starting with a dot, backslashes, control characters, more "
        f"than {paths.MAX_PATH_BYTES} bytes in all, a segment of more than "
        f"{paths.MAX_SEGMENT_BYTES} bytes (UTF-8), an artifact name (the last segment) of more "
        f"than {paths.MAX_NAME_BYTES} bytes (its checksum sidecar adds "
        f"{paths.SIDECAR_EXTRA_BYTES}), and the reserved first segment '-'. A request line "
        "longer than 4094 bytes gets 414."
    ),
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": paths.MAX_PATH_BYTES,
        "pattern": paths.PATTERN,
    },
}

_URI_TOO_LONG = {
    "description": "the request line is longer than gunicorn's limit (4094 bytes); gunicorn's own HTML page",
    "content": {"text/html": {"schema": {"type": "string"}}},
}

_READ_SECURITY = [{}, {"bearerAuth": []}]
_WRITE_SECURITY = [{"bearerAuth": []}]

_ARTIFACT_HEADERS = {
    "ETag": {"description": "the quoted sha256 of the bytes", "schema": {"type": "string"}},
    "Content-Length": {"schema": {"type": "integer"}},
    "Accept-Ranges": {"schema": {"type": "string", "enum": ["bytes"]}},
}


def document(server_url: str = "") -> dict:
    listing_or_file = {
        "description": "the artifact's bytes, or a browse page (HTML, or JSON when asked) for a directory",
        "headers": _ARTIFACT_HEADERS,
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "text/html": {"schema": {"type": "string"}},
            "application/json": {"schema": {"$ref": "#/components/schemas/Listing"}},
        },
    }
    artifact_path = {
        "parameters": [_PATH_PARAM],
        "get": {
            "operationId": "getArtifact",
            "summary": "Download an artifact (conditional GET and Range supported) or browse a directory",
            "security": _READ_SECURITY,
            "parameters": [
                {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"}},
                {
                    "name": "If-None-Match",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": listing_or_file,
                "206": {
                    "description": "the requested byte range",
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                },
                "304": {"description": "If-None-Match matched the ETag"},
                **_errors(400, 401, 403, 404, 416),
            },
        },
        "head": {
            "operationId": "headArtifact",
            "summary": "Headers of a download, without the body",
            "security": _READ_SECURITY,
            "responses": {
                "200": {"description": "the artifact exists", "headers": _ARTIFACT_HEADERS},
                "304": {"description": "If-None-Match matched the ETag"},
                "400": {"description": "bad path"},
                "401": {"description": "no bearer token"},
                "403": {"description": "wrong token"},
                "404": {"description": "no such artifact"},
                "416": {"description": "the Range is outside the artifact"},
            },
        },
        "put": {
            "operationId": "putArtifact",
            "summary": "Upload an artifact (streamed, checked, atomic)",
            "security": _WRITE_SECURITY,
            "parameters": [
                {
                    "name": CHECKSUM_HEADER,
                    "in": "header",
                    "required": False,
                    "description": "sha256 of the body; when it does not match, 400 and nothing is stored",
                    "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            },
            "responses": {
                "200": _json(
                    {"$ref": "#/components/schemas/Upload"}, "identical bytes were already stored"
                ),
                "201": _json({"$ref": "#/components/schemas/Upload"}, "stored"),
                **_errors(400, 401, 403, 405, 409, 411, 413, 507),
            },
        },
        "delete": {
            "operationId": "deleteArtifact",
            "summary": "Remove an artifact",
            "security": _WRITE_SECURITY,
            "responses": {
                "204": {"description": "removed"},
                **_errors(400, 401, 403, 404, 405, 409),
            },
        },
    }
    root = {
        "get": {
            "operationId": "browseRoot",
            "summary": "Browse page of the root: HTML, or JSON with Accept: application/json",
            "security": _READ_SECURITY,
            "responses": {
                "200": {
                    "description": "the listing",
                    "content": {
                        "text/html": {"schema": {"type": "string"}},
                        "application/json": {"schema": {"$ref": "#/components/schemas/Listing"}},
                    },
                },
                **_errors(401, 403),
            },
        }
    }
    internal = {
        "/-/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness: 200 while the server answers",
                "security": [{}],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["status", "read_only"],
                            "properties": {
                                "status": {"type": "string", "enum": ["ok"]},
                                "read_only": {"type": "boolean"},
                            },
                        },
                        "alive",
                    )
                },
            }
        },
        "/-/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus text: requests by status, bytes in and out, uploads rejected by reason",
                "security": _READ_SECURITY,
                "responses": {
                    "200": {
                        "description": "Prometheus text format 0.0.4",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(401, 403),
                },
            }
        },
        "/-/api/artifacts": {
            "get": {
                "operationId": "listArtifacts",
                "summary": "Every artifact whose path starts with prefix",
                "security": _READ_SECURITY,
                "parameters": [
                    {
                        "name": "prefix",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "plain string prefix of the path, e.g. mosn/v1/",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 10000,
                            "default": 1000,
                        },
                        "description": "most artifacts in one page",
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "list only artifacts after this path (the X-Next-Cursor of the previous page)",
                    },
                ],
                "responses": {
                    "200": {
                        **_json(
                            {"type": "array", "items": {"$ref": "#/components/schemas/Artifact"}},
                            "one page of the artifacts, in path order (segment by segment)",
                        ),
                        "headers": {
                            "Link": {
                                "description": 'the next page, as `<url>; rel="next"`, when more follow',
                                "schema": {"type": "string"},
                            },
                            "X-Next-Cursor": {
                                "description": "the cursor of the next page, when more follow",
                                "schema": {"type": "string"},
                            },
                        },
                    },
                    **_errors(400, 401, 403),
                },
            }
        },
        "/-/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [{}],
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3 document")},
            }
        },
    }
    doc = {
        "openapi": "3.0.3",
        "info": {
            "title": "mosn-proxyv2 artifact server",
            "version": "1",
            "description": "A static-file-server-compatible artifact store: GET/HEAD read, PUT/DELETE with a bearer token write.",
        },
        "paths": {**internal, "/": root, "/{path}": artifact_path},
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "reason", "status"],
                    "properties": {
                        "error": {"type": "string"},
                        "reason": {"type": "string"},
                        "status": {"type": "integer"},
                    },
                },
                "Artifact": {
                    "type": "object",
                    "required": ["path", "size", "sha256", "modified", "url"],
                    "properties": {
                        "path": {"type": "string"},
                        "size": {"type": "integer", "minimum": 0},
                        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        "modified": {"type": "string", "format": "date-time"},
                        "url": {"type": "string"},
                    },
                },
                "Upload": {
                    "type": "object",
                    "required": ["path", "size", "sha256", "url", "created"],
                    "properties": {
                        "path": {"type": "string"},
                        "size": {"type": "integer", "minimum": 0},
                        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        "url": {"type": "string"},
                        "created": {"type": "boolean"},
                    },
                },
                "Listing": {
                    "type": "object",
                    "required": ["path", "directories", "artifacts"],
                    "properties": {
                        "path": {"type": "string"},
                        "directories": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name", "path", "url"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "path": {"type": "string"},
                                    "url": {"type": "string"},
                                },
                            },
                        },
                        "artifacts": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Artifact"},
                        },
                    },
                },
            },
        },
    }
    # gunicorn answers these itself, before the app sees the request, on any operation.
    for operations in doc["paths"].values():
        for name, operation in operations.items():
            if name != "parameters":
                operation["responses"].setdefault("414", _URI_TOO_LONG)
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
