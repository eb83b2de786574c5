"""The self-hosted artifact server: a Flask app factory, served in production by gunicorn.

`create_app(config)` builds the app; `python -m server` (or `invoke serve`) runs it under
gunicorn; `server.background` starts and stops one in the background for the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from server.config import ServerConfig, build_config
from server.store import Store

if TYPE_CHECKING:
    from flask import Flask


def create_app(config: ServerConfig | Mapping[str, Any]) -> Flask:
    """Build the app for `config` (a ServerConfig, or a mapping of build_config arguments).

    Like the instance folder of Flask's tutorial, the root's folders are made if missing;
    nothing else on disk changes. What a start clears (uploads a crash left behind, unused
    blobs, the counters) is the launcher's, done once before gunicorn forks (server.serve).
    """
    if not isinstance(config, ServerConfig):
        options = dict(config)
        options.setdefault("environ", {})
        config = build_config(options.pop("root"), **options)
    # Imported here, not above: the package's other modules (background, config, errors) serve
    # the pipeline too, which may run without Flask and prometheus_client (mosn-proxyv2
    # without the [server] extra).
    from flask import Flask

    from server import views
    from server.fastpath import FastDownloads
    from server.metrics import Metrics

    app = Flask(__name__)
    app.config["ARTIFACT_SERVER"] = config
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.url_map.converters["anypath"] = views.AnyPath
    store = Store(
        config.root,
        max_upload_size=config.max_upload_size,
        allow_overwrite=config.allow_overwrite,
    )
    store.make_layout()
    metrics = Metrics()
    app.extensions["artifact_store"] = store
    app.extensions["artifact_metrics"] = metrics
    app.register_blueprint(views.bp)
    app.wsgi_app = FastDownloads(
        app.wsgi_app,
        store,
        metrics,
        config.anonymous_reads,
        front_cache=config.front_cache if config.front else None,
    )
    return app
