"""Publishing to S3 or an S3-compatible store, through boto3 with its standard credential chain."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ci import log, retry
from ci.config import Settings
from ci.errors import UserError
from ci.progress import Progress
from ci.publish.base import Item, Stored, transient_status

TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "503",
        "500",
    }
)
CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "InvalidToken",
        "ExpiredToken",
        "403",
    }
)
CREDENTIAL_HINT = (
    "check the credentials boto3 finds (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE,"
    " an instance or OIDC role) and that they may read, write and list {where}"
)
NO_CREDENTIALS = (
    "no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE,"
    " or run where an instance or OIDC role provides them"
)
ACL_REFUSED = frozenset({"AccessControlListNotSupported", "AccessDenied", "InvalidRequest"})


class AclRefused(Exception):
    pass


# Stored with each object so a later run can compare without downloading, on any
# S3-compatible store (not all of them keep ChecksumSHA256).
SHA256_METADATA = "sha256"


class S3Store:
    def __init__(self, settings: Settings) -> None:
        import boto3
        from botocore.config import Config

        if not settings.bucket:
            raise UserError(
                "--to s3 needs a bucket: pass --bucket NAME (or set MOSN_PROXYV2_BUCKET)"
            )
        self.bucket = settings.bucket
        self.public = settings.public
        self.expiry = settings.url_expiry
        self.endpoint = settings.endpoint_url.rstrip("/") or None
        session = boto3.session.Session(region_name=settings.region or None)
        credentials = session.get_credentials()
        if credentials is None:
            raise UserError(NO_CREDENTIALS)
        if not self.public and credentials.get_frozen_credentials().token:
            # A presigned URL made with temporary credentials embeds the session token (a
            # secret, then in istio.env and logs) and dies with the session, often in an hour.
            raise UserError(
                "the AWS credentials are temporary (they carry a session token), so presigned"
                " URLs would contain that token and expire with the session; use --public with a"
                " bucket policy that allows reading the prefix, or long-term credentials"
            )
        options: dict[str, Any] = {
            "signature_version": "s3v4",
            # One retry policy for every store (ci.retry), so botocore's own is off.
            "retries": {"total_max_attempts": 1},
            "connect_timeout": 10,
            "read_timeout": 120,
        }
        # Reading ChecksumSHA256 back is AWS's; elsewhere the sha256 metadata is enough.
        self.head_options = {"ChecksumMode": "ENABLED"}
        if self.endpoint and not _is_aws(self.endpoint):
            self.head_options = {}
            # Recent botocore adds CRC checksums and chunked trailers by default, which many
            # S3-compatible stores reject; our sha256 travels in ChecksumSHA256 anyway.
            options["request_checksum_calculation"] = "when_required"
            options["response_checksum_validation"] = "when_required"
            options["s3"] = {"addressing_style": "path"}
        self.client = session.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=session.region_name or "us-east-1",
            config=Config(**options),
        )

    def describe(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        return f"s3://{self.bucket}{where}"

    def display(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _attempt(
        self,
        key: str,
        operation: str,
        missing_ok: bool = False,
        raw_codes: frozenset[str] = frozenset(),
        **kwargs: Any,
    ) -> Any:
        """One call, its failures sorted into Transient (retry) and UserError (stop)."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
        )
        from botocore.exceptions import (
            ConnectionError as BotoConnectionError,
        )

        try:
            return getattr(self.client, operation)(Bucket=self.bucket, Key=key, **kwargs)
        except ClientError as exc:
            if missing_ok and _code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return None
            if _code(exc) in raw_codes:
                raise AclRefused(_code(exc)) from None
            raise self._client_error(exc, key) from None
        except NoCredentialsError:
            raise UserError(NO_CREDENTIALS) from None
        except BotoConnectionError as exc:
            raise retry.Transient(f"connection failed ({type(exc).__name__})") from None
        except BotoCoreError as exc:
            raise UserError(
                f"{self.display(key)}: {type(exc).__name__}; check --endpoint-url and --region"
            ) from None

    def _retrying(self, key: str, attempt: Callable[[], Any]) -> Any:
        return retry.call(
            attempt,
            what=self.display(key) + (f" ({self.endpoint})" if self.endpoint else ""),
            hint="check the network, --endpoint-url and --region, and the store's status",
        )

    def _client_error(self, exc: Any, key: str) -> Exception:
        code = _code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in TRANSIENT_CODES or transient_status(status):
            named = code and code != str(status)
            return retry.Transient(f"{code} (HTTP {status})" if named else f"HTTP {status}")
        if code in CREDENTIAL_CODES:
            where = f"s3://{self.bucket}/{key.rsplit('/', 1)[0]}/"
            return UserError(
                f"S3 refused the request for {self.display(key)} ({code});"
                f" {CREDENTIAL_HINT.format(where=where)}"
            )
        if code == "NoSuchBucket":
            at = f" at {self.endpoint}" if self.endpoint else ""
            return UserError(f"bucket {self.bucket} does not exist{at}; create it or fix --bucket")
        if code in {"BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest"}:
            return UserError(
                f"S3 received different bytes for {self.display(key)} than were sent ({code});"
                " check for a proxy rewriting uploads, then run again"
            )
        # The store's own message may quote request details; the code alone is safe to print.
        return UserError(
            f"S3 answered {code or status} for {self.display(key)};"
            " check the bucket, its policy and --region"
        )

    def stat(self, key: str) -> Stored | None:
        head = self._retrying(
            key, lambda: self._attempt(key, "head_object", missing_ok=True, **self.head_options)
        )
        return None if head is None else _stored(head)

    def put(self, item: Item, *, replace: bool) -> None:
        # S3 overwrites in place; `replace` matters only to stores that refuse by default.
        checksum = base64.b64encode(bytes.fromhex(item.sha256)).decode()

        # Files fetched by a plain URL ask for a public-read ACL; a bucket that has ACLs
        # disabled (or blocks public ones) is retried without, its policy then decides, and
        # the download check after upload says so if the files cannot be read.
        acl = {"ACL": "public-read"} if self.public or item.placeholder else {}

        def send(body: Any) -> None:
            self._attempt(
                item.key,
                "put_object",
                Body=body,
                ContentLength=item.size,
                ChecksumSHA256=checksum,
                Metadata={SHA256_METADATA: item.sha256},
                ContentType=_content_type(item.name),
                raw_codes=ACL_REFUSED if acl else frozenset(),
                **acl,
            )

        def attempt() -> None:
            # Each attempt reopens the file: a failed one may have consumed the stream.
            progress = Progress("uploading", item.name, item.size)
            with item.open(progress) as body:
                try:
                    send(body)
                except AclRefused as refused:
                    log.info(
                        f"    {item.name}: the bucket refused a public-read ACL ({refused});"
                        " uploading without one, so the bucket policy decides who reads it"
                    )
                    acl.clear()
                    body.seek(0)
                    send(body)
            progress.finish("uploaded")

        self._retrying(item.key, attempt)

    def check_write(self, item: Item) -> None:
        """Nothing to ask: every request to S3 is signed, the HEADs that found each file
        already there included, so wrong credentials have failed before this."""

    def url(self, key: str) -> str:
        params = {"Bucket": self.bucket, "Key": key}
        signed = self.client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=self.expiry
        )
        return _without_query(signed) if self.public else signed

    def folder_url(self, folder: str) -> str:
        # A presigned URL names one object, so a folder URL is always the plain one.
        plain = _without_query(
            self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": f"{folder}/x"}, ExpiresIn=60
            )
        )
        return plain.rsplit("/", 1)[0]

    def unreadable_hint(self, item: Item) -> str:
        folder = item.key.rsplit("/", 1)[0]
        policy = f"a bucket policy allowing anonymous s3:GetObject on {folder}/*"
        if item.placeholder:
            return (
                f"ISTIO_ENVOY_BASE_URL names a folder, which a presigned URL cannot, so the WASM"
                f" placeholders must be public: add {policy}, or pass --wasm patch"
            )
        if self.public:
            return f"--public needs {policy}, or drop --public for presigned URLs"
        return "check the bucket's policy and the credentials' rights (s3:GetObject)"


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _stored(head: dict[str, Any]) -> Stored:
    sha = head.get("Metadata", {}).get(SHA256_METADATA)
    if not sha and head.get("ChecksumSHA256"):
        try:
            sha = base64.b64decode(head["ChecksumSHA256"]).hex()
        except ValueError:
            sha = None
    return Stored(int(head.get("ContentLength", 0)), sha)


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _is_aws(endpoint: str) -> bool:
    host = urlsplit(endpoint).hostname or ""
    return host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")


def _content_type(name: str) -> str:
    if name.endswith(".tar.gz"):
        return "application/gzip"
    if name.endswith(".wasm"):
        return "application/wasm"
    return "text/plain"
