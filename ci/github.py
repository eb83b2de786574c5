"""The composite action's own logic: check its inputs, then write its outputs and job summary.

action.yml passes every pipeline input to its steps as the environment variable the settings
already read (`MOSN_PROXYV2_<SETTING>`), so the invoke tasks it calls see exactly what a user
running them by hand with those variables would. The inputs are checked with the same
option registry (ci/config.py), which names each input. This module is also the one place
that writes to the runner: step outputs, the job summary and ::error:: annotations. The
stages return records (ci/publish's Published and published.json, ci/image's image.json,
ci/e2e's Report); what reaches the runner is made from those, here.

    python -m ci.github extras         # the pyproject extras the inputs need, comma-separated
    python -m ci.github validate       # ::error:: annotations and exit 1 when inputs are wrong
    python -m ci.github server-state   # output running-before: a bundled server already up?
    python -m ci.github report         # every output of the action; the job summary
    python -m ci.github stop-server    # stop the bundled server this run started (keep-server)

`store: server` with a free loopback server-url makes publish start the bundled server in
the background. On a self-hosted runner that gunicorn, holding a write token, would outlive
the job, so the action's last step (run even after a failure) stops a server it started
itself: one running from server-root now that did not run before the pipeline. A server
that was already up (the user's, or one a later step needs: `keep-server: true`) is left.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ci import config, extras, names
from ci.builder.smoke import host_platform
from ci.dist import Dist
from ci.errors import UserError
from ci.markdown import cell as markdown_cell
from ci.progress import human

if TYPE_CHECKING:
    from ci.image.result import ImageResult
    from ci.publish import Published
    from ci.publish.record import Record

# Action input -> the setting it sets, from the registry (ci/config.py); action.yml's inputs
# and env blocks are checked against it.
INPUT_SETTINGS: dict[str, str] = {
    option.action: name for name, option in config.OPTIONS.items() if option.action
}
# Inputs of the action itself, passed to its steps under these names.
KEEP_SERVER_ENV = "KEEP_SERVER"
RUNNING_BEFORE_ENV = "SERVER_RUNNING_BEFORE"


env_name = config.env_name


def project_config(action_path: Path) -> dict:
    """The `mosn_proxyv2:` section of the action's invoke.yaml, loaded the way invoke does."""
    from invoke import Config

    config.check_file(action_path / "invoke.yaml")
    cfg = Config(project_location=str(action_path))
    cfg.load_project()
    return dict(cfg.get(config.CONFIG_SECTION, {}))


def action_path(environ: Mapping[str, str]) -> Path:
    # Outside a runner (tests, by hand) the action is this checkout.
    return Path(environ.get("GITHUB_ACTION_PATH") or Path(__file__).resolve().parent.parent)


def read_settings(environ: Mapping[str, str]) -> tuple[config.Settings, list[str]]:
    """The settings the inputs give, and what is wrong with them, in the inputs' names."""
    return config.read(project_config(action_path(environ)), environ=environ, action=True)


def load_settings(environ: Mapping[str, str]) -> config.Settings:
    s, found = read_settings(environ)
    if found:
        raise UserError(found[0])
    return s


def problems(environ: Mapping[str, str], cwd: Path) -> list[str]:
    """Everything wrong with the inputs, each as a sentence saying what to change."""
    # Checked first, so that a runner lacking a package (system-site-packages: true) gets a
    # sentence instead of an ImportError.
    missing = extras.missing(extras.CORE)
    if missing:
        return [
            f"Python package(s) {', '.join(missing)} missing on the runner; install them "
            "(python3 -m pip install ...) or use `system-site-packages: false`"
        ]
    # The tasks' modules need those packages (the image stage imports docker).
    from ci import image

    s, found = read_settings(environ)
    for extra, needed_by in needed_extras(s, cwd).items():
        if extras.missing(extras.EXTRAS[extra]):
            found.append(
                f"{needed_by} needs the [{extra}] extra, which is not installed on the runner; "
                f"{extras.install_hint(extra)}, or use `system-site-packages: false`"
            )
    keep = environ.get(KEEP_SERVER_ENV, "").strip().lower()
    if keep not in ("", "true", "false"):
        found.append(config.not_one_of("input `keep-server`:", keep, ("true", "false")))
    found += [message for wrong, message in _together(s, cwd) if wrong]
    # The image name's own check (ranges and formats of single values are the registry's,
    # already in `found`), run now instead of after the build.
    try:
        if s.image:
            image.image_tags(image.parse_image_name(s.image), s.tags, "x", "`image` or `tags`")
    except UserError as exc:
        found.append(f"input `image`: {exc}")
    return found


def needed_extras(s: config.Settings, cwd: Path) -> dict[str, str]:
    """{extra: the input that needs it} for these inputs (ci/extras.py says what each holds)."""
    needed = {}
    if s.to == "s3":
        needed["s3"] = "input `store: s3`"
    if bundled_server_root(s, cwd) is not None:
        needed["server"] = (
            f"input `store: server` with server-url {s.server_url} (publish starts the bundled"
            " server there when nothing answers)"
        )
    if s.image or s.in_docker:
        needed["image"] = "input `image`" if s.image else "input `in-docker: true`"
    return needed


def extras_for(environ: Mapping[str, str], cwd: Path) -> int:
    """Print the extras the inputs need, for the install step's `pip install '.[...]'`."""
    s, _ = read_settings(environ)  # a bad value is validate's to report, after the install
    print(",".join(needed_extras(s, cwd)))
    return 0


def _together(s: config.Settings, cwd: Path) -> list[tuple[bool, str]]:
    """The inputs that are wrong only in combination: (wrong?, what to do)."""
    return [
        (
            s.to == "s3" and not s.bucket,
            "store: s3 needs s3-bucket; set `s3-bucket: <bucket>` "
            "(and aws-region, or s3-endpoint-url for an S3-compatible store)",
        ),
        (
            s.to == "server" and not s.server_url.startswith(("http://", "https://")),
            f"server-url must start with http:// or https://, got '{s.server_url}'; "
            "e.g. `server-url: https://artifacts.example.com`",
        ),
        (
            s.push and not s.image,
            "push: true needs image; set `image: <registry>/<repository>` "
            "(e.g. ghcr.io/my-org/proxyv2) or drop push",
        ),
        (
            s.image and s.mode == "quick" and not s.base,
            "mode: quick needs base-image, the proxyv2 image to put MOSN into; set e.g. "
            "`base-image: mosnio/proxyv2:v1.0.0-1.10.6`, or use `mode: full`",
        ),
        (
            s.tags and not s.image,
            "tags are given but image is not; set `image: <registry>/<repository>`",
        ),
        (
            bool(s.registry_username) != bool(s.registry_password),
            "registry-username and registry-password go together; set both (the password "
            "from a secret: `registry-password: ${{ secrets.REGISTRY_PASSWORD }}`) or neither",
        ),
        (
            s.mesh_check and host_platform() not in s.platforms,
            f"mesh-check: true runs the built MOSN on this runner, so platforms must include "
            f"{host_platform() or 'this runner`s platform'} (platforms: {','.join(s.platforms)})",
        ),
        (
            s.mosn_src and s.mosn_ref,
            "mosn-src and mosn-ref are both set; use mosn-src for a checkout on the runner "
            "or mosn-ref to clone a ref of MOSN, not both",
        ),
        (
            s.mosn_src and not (cwd / s.path("mosn_src")).is_dir(),
            f"mosn-src '{s.mosn_src}' is not a folder (relative paths are read from "
            f"working-directory, here {cwd}); check MOSN out first, e.g. actions/checkout "
            "with `repository: mosn/mosn` and `path: mosn`, then `mosn-src: mosn`",
        ),
    ]


# ---- the runner's files and workflow commands: the one place that writes them --------------


def write_outputs(values: Mapping[str, str], path: str | os.PathLike | None = None) -> None:
    """Append step outputs to `path` (default $GITHUB_OUTPUT); outside Actions, do nothing."""
    path = path or os.environ.get("GITHUB_OUTPUT")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        for name, value in values.items():
            if "\n" in value:
                # The runner's heredoc form, with a delimiter no value can contain by chance.
                delimiter = f"EOF_{secrets.token_hex(8)}"
                out.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
            else:
                out.write(f"{name}={value}\n")


def append_summary(markdown: str, path: str | os.PathLike | None = None) -> bool:
    """Append Markdown to `path` (default the job summary, $GITHUB_STEP_SUMMARY); False
    outside Actions."""
    path = path or os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    with open(path, "a", encoding="utf-8") as summary:
        summary.write(markdown)
    return True


def error_annotation(title: str, message: str) -> str:
    """An ::error:: workflow command; its data escaped the way the runner unescapes it."""
    data = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return f"::error title={title}::{data}"


def validate(environ: Mapping[str, str], cwd: Path) -> int:
    found = problems(environ, cwd)
    for message in found:
        print(error_annotation("mosn-proxyv2 input", message), flush=True)
    if found:
        print(
            f"{len(found)} input problem(s); fix the `with:` of the mosn-proxyv2 step",
            file=sys.stderr,
        )
    return 1 if found else 0


def summary_markdown(dist: Dist, published: Record, image: ImageResult | None) -> str:
    lines = [
        f"### mosn-proxyv2: MOSN {markdown_cell(dist.mosn_version)} for Istio {markdown_cell(dist.istio_version)}",
        "",
        "| tarball | size | sha256 | URL |",
        "| --- | ---: | --- | --- |",
    ]
    for f in dist.files:
        url = published.url(f.name)
        lines.append(
            f"| `{markdown_cell(f.name)}` | {human(f.size)} | `{f.sha256}` | {markdown_cell(url) or 'not published'} |"
        )
    if dist.fixes:
        moved = ", ".join(
            f"`{markdown_cell(f['module'])}` {markdown_cell(f['from'])} → {markdown_cell(f['to'])}"
            for f in dist.fixes
        )
        lines += ["", f"Dependency fixes (fix-deps, built with {dist.go_version}): {moved}"]
    if published.istio_env:
        lines += ["", f"Istio build variables: `{markdown_cell(published.istio_env)}`"]
    if image:
        digest = image.digest or "not pushed"
        lines += ["", "| image | digest |", "| --- | --- |"]
        lines += [
            f"| `{markdown_cell(ref)}` | `{markdown_cell(digest)}` |"
            for ref in image.references or [image_reference(image)]
        ]
        if image.pinned:
            lines += ["", f"Pull by digest: `{markdown_cell(image.pinned)}`"]
    return "\n".join(lines) + "\n"


def image_reference(image: ImageResult | None) -> str:
    """The image as `repository:tag` (its first tag), what a cluster's configuration names."""
    if not image:
        return ""
    return image.references[0] if image.references else image.repository


def report(environ: Mapping[str, str], cwd: Path) -> int:
    """The outputs and the job summary, from what the stages wrote: published.json, image.json."""
    # The stages' packages import requests and the like: not before validate has checked them.
    from ci.image.result import ImageResult
    from ci.publish import record as publish_record

    s = load_settings(environ)
    dist_dir = cwd / s.path("dist")
    dist = Dist.load(dist_dir)
    published = publish_record.load(dist_dir / names.PUBLISHED_JSON)
    image = ImageResult.load(dist_dir / names.IMAGE_JSON) if s.image else None

    outputs = {
        "mosn-version": dist.mosn_version,
        "tarballs": json.dumps(published.tarballs(f.name for f in dist.files)),
        "env-file": published.istio_env,
        "image": image_reference(image),
        "digest": (image.digest if image else None) or "",
    }
    if environ.get("GITHUB_OUTPUT"):
        write_outputs(outputs, environ["GITHUB_OUTPUT"])
    markdown = summary_markdown(dist, published, image)
    if not append_summary(markdown, environ.get("GITHUB_STEP_SUMMARY")):
        print(markdown)
    return 0


def publish_outputs(result: Published) -> dict[str, str]:
    """`invoke publish` as a workflow step: one output per istio.env variable (lowercase,
    kebab), the make command, the tarballs and the env file."""
    outputs = {key.lower().replace("_", "-"): value for key, value in result.values.items()}
    outputs["make-command"] = result.make_command
    outputs["tarballs"] = json.dumps(result.tarballs)
    outputs["env-file"] = str(result.env_file.resolve())
    return outputs


def bundled_server_root(s: config.Settings, cwd: Path) -> Path | None:
    """Where publish would run the bundled server from, or None when it would not start one."""
    from urllib.parse import urlsplit

    from ci.publish.local_server import LOCAL_HOSTS

    if s.to != "server" or urlsplit(s.server_url).hostname not in LOCAL_HOSTS:
        return None
    return (cwd / s.path("server_root")).resolve()


def _our_server_root(environ: Mapping[str, str], cwd: Path) -> Path | None:
    # Inputs that validate refuses start no server: nothing to look for, and no second
    # annotation for what validate reports.
    s, found = read_settings(environ)
    return None if found else bundled_server_root(s, cwd)


def _running(root: Path | None) -> int | None:
    # Imported only for a bundled server: an S3-only runner has no [server] extra.
    if root is None:
        return None
    from server import background

    return background.running(root)


def server_state(environ: Mapping[str, str], cwd: Path) -> int:
    root = _our_server_root(environ, cwd)
    pid = _running(root)
    if environ.get("GITHUB_OUTPUT"):
        write_outputs({"running-before": str(pid or "")}, environ["GITHUB_OUTPUT"])
    return 0


def stop_server(environ: Mapping[str, str], cwd: Path) -> int:
    root = _our_server_root(environ, cwd)
    pid = _running(root)
    if pid is None:
        return 0
    if environ.get(RUNNING_BEFORE_ENV):
        print(f"the artifact server from {root} (pid {pid}) ran before this step: left running")
        return 0
    if environ.get(KEEP_SERVER_ENV, "").strip().lower() == "true":
        print(
            f"keep-server: true, so the artifact server this step started (pid {pid}, storage "
            f"{root}) keeps running; stop it with `invoke serve --stop --root {root}`"
        )
        return 0
    from server import background

    background.stop(root)
    print(
        f"stopped the artifact server this step started (pid {pid}, storage {root}); "
        "set `keep-server: true` to keep it for later steps"
    )
    return 0


def main(argv: list[str]) -> int:
    commands = {
        "extras": extras_for,
        "validate": validate,
        "report": report,
        "server-state": server_state,
        "stop-server": stop_server,
    }
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: python -m ci.github {'|'.join(commands)}", file=sys.stderr)
        return 2
    try:
        return commands[argv[0]](os.environ, Path.cwd())
    except UserError as exc:
        if exc.detail:
            print(exc.detail, file=sys.stderr)
        print(error_annotation("mosn-proxyv2", str(exc)), flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
