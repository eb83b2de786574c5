"""The API's own HTTP header names, shared by the app, its fast path, nginx's config, the
OpenAPI document and the store's messages."""

# The body's sha256: sent with every download, and checked against the body of an upload.
CHECKSUM_HEADER = "X-Checksum-Sha256"
