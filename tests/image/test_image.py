"""`invoke image --mode quick` against the real engine and a real registry, and its refusals."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from ci import image, istio_env, names
from ci.errors import UserError
from ci.image import engine
from ci.image.registry import ImageName, image_tags, parse_image_name, push_all
from ci.image.result import ImageResult
from tests.helpers.image import (
    invoke,
    last_line,
    local_references,
    registry_digest,
    registry_tags,
    remove_repository,
    run_in_image,
    unique,
)
from tests.helpers.net import free_port
from tests.helpers.registry import running_registry

# ---- names, tags, labels, istio.env: no engine needed --------------------------------------


@pytest.mark.parametrize(
    ("given", "repository", "tag"),
    [
        (
            "Registry.Example.com:5000/Mesh/ProxyV2:Dev-1",
            "registry.example.com:5000/mesh/proxyv2",
            "Dev-1",
        ),
        ("127.0.0.1:5000/proxyv2", "127.0.0.1:5000/proxyv2", ""),
        ("mosnio/proxyv2:v1.0.0-1.10.6", "mosnio/proxyv2", "v1.0.0-1.10.6"),
    ],
)
def test_image_names_are_lowercased_and_split(given, repository, tag):
    assert parse_image_name(given) == ImageName(repository, tag)


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("proxyv2:1.0", "has no registry or namespace"),
        ("proxyv2", "has no registry or namespace"),
        ("mosnio/proxyv2@sha256:" + "0" * 64, "has a digest"),
        ("mosnio/proxy v2", "not a valid image repository"),
        ("mosnio/proxyv2:bad/tag:x", "not a valid image"),
    ],
)
def test_bad_image_names_are_refused(given, says):
    with pytest.raises(UserError, match=says):
        parse_image_name(given)


def test_registry_and_hub_of_a_name():
    assert ImageName("127.0.0.1:5000/mesh/proxyv2").registry == "127.0.0.1:5000"
    assert ImageName("localhost/proxyv2").registry == "localhost"
    assert ImageName("mosnio/proxyv2").registry == "docker.io"
    assert ImageName("127.0.0.1:5000/mesh/proxyv2").hub == "127.0.0.1:5000/mesh"


def test_tag_from_the_name_comes_first_then_extra_tags_without_repeats():
    name = ImageName("r.example/p", "mine")
    assert image_tags(name, ("latest", "mine"), "v1-1.10.6") == ["mine", "latest"]
    assert image_tags(ImageName("r.example/p"), (), "v1-1.10.6") == ["v1-1.10.6"]
    with pytest.raises(UserError, match="fix --image or --tags"):
        image_tags(name, ("no/slash",), "v1")


def test_labels_go_into_one_label_step_with_dockerfile_quoting():
    text = engine.dockerfile("base:1", True, {"a": 'x$y "q" \\z', "b": "v1.0.0(abc)"})
    assert text == (
        "FROM base:1\n"
        f"COPY mosn {names.BINARY_PATH_IN_IMAGE}\n"
        'LABEL a="x\\$y \\"q\\" \\\\z" b="v1.0.0(abc)"\n'
    )


def test_istio_env_round_trip_keeps_equals_signs_in_values(tmp_path):
    values = {names.ISTIO_ENVOY_RELEASE_URL: "http://h/mosn.tar.gz?X-Sig=a=b", "SIDECAR": "mosn"}
    istio_env.write(tmp_path / "istio.env", values)
    assert istio_env.read(tmp_path / "istio.env") == values
    (tmp_path / "bad.env").write_text("# comment\n\nNOEQUALS\n")
    with pytest.raises(UserError, match="3 is not (a )?KEY=VALUE"):
        istio_env.read(tmp_path / "bad.env")


# ---- against the engine ---------------------------------------------------------------------


def expected_version(dist_dir) -> str:
    return "mosn version " + json.loads((dist_dir / names.MANIFEST).read_text())["mosn_version"]


@pytest.mark.docker
@pytest.mark.slow
def test_quick_push_then_pull_back_by_digest_runs_mosn_with_labels(
    docker_client, busybox_base, registry, dist_dir, built_dist, repositories
):
    repository = f"{registry}/{unique('quick')}/proxyv2"
    repositories.append(repository)
    result = invoke(
        "image", "--base", busybox_base, "--image", repository, "--dist", str(dist_dir),
        "--tags", "latest,Dev", "--push",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    default_tag = names.default_image_tag(built_dist.mosn_version_safe, built_dist.istio_version)

    record = json.loads((dist_dir / names.IMAGE_JSON).read_text())
    digest = record["digest"]
    assert record["image"] == repository
    assert record["tags"] == [default_tag, "latest", "Dev"]
    assert f"{repository}@{digest}" in result.stdout
    repo_path = repository.split("/", 1)[1]
    assert registry_tags(registry, repo_path) == (200, sorted([default_tag, "latest", "Dev"]))
    for tag in record["tags"]:
        assert registry_digest(registry, repo_path, tag) == digest

    # Nothing local any more: what runs below came from the registry.
    remove_repository(docker_client, repository)
    assert local_references(docker_client, repository) == []
    pinned = f"{repository}@{digest}"
    pulled = docker_client.images.pull(pinned)
    binary = names.BINARY_PATH_IN_IMAGE
    assert run_in_image(docker_client, pinned, "--version", entrypoint=binary) == (
        expected_version(dist_dir) + "\n"
    )
    listing = run_in_image(docker_client, pinned, "-c", f"ls -l {binary}", entrypoint="/bin/sh")
    assert listing.startswith("-rwxr-xr-x")
    labels = pulled.labels
    assert labels == {**labels, **record["labels"]}
    assert labels["io.mosn.version"] == built_dist.mosn_version
    assert labels["io.istio.version"] == "1.10.6"
    assert labels["org.opencontainers.image.revision"] == built_dist.git_commit
    assert labels["org.opencontainers.image.created"] == "2022-03-25T00:00:00Z"
    assert labels["org.opencontainers.image.version"] == default_tag


@pytest.mark.docker
def test_quick_without_push_tags_locally_under_lowercased_name_and_leaves_no_throwaway_tag(
    docker_client, busybox_base, dist_dir, built_dist, repositories
):
    name = unique("local")
    repository = f"example.invalid/{name}/proxyv2"
    repositories.append(repository)
    result = invoke(
        "image", "--base", busybox_base, "--image", f"Example.Invalid/{name.upper()}/ProxyV2:Mine",
        "--dist", str(dist_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert local_references(docker_client, repository) == [f"{repository}:Mine"]
    record = json.loads((dist_dir / names.IMAGE_JSON).read_text())
    assert (record["digest"], record["tags"]) == (None, ["Mine"])
    assert record["id"] == docker_client.images.get(f"{repository}:Mine").id


@pytest.mark.docker
def test_version_mismatch_removes_the_image_and_pushes_nothing(
    docker_client, busybox_base, registry, dist_dir, repositories
):
    manifest = dist_dir / names.MANIFEST
    data = json.loads(manifest.read_text())
    data["mosn_version"] = "v9.9.9(0000000)"
    manifest.write_text(json.dumps(data))
    repository = f"{registry}/{unique('mismatch')}/proxyv2"
    repositories.append(repository)
    result = invoke(
        "image", "--base", busybox_base, "--image", f"{repository}:t", "--dist", str(dist_dir),
        "--push",
    )  # fmt: skip
    assert result.returncode == 1
    assert last_line(result.stderr).startswith("error: the built image's /usr/local/bin/mosn")
    assert "expected 'mosn version v9.9.9(0000000)'" in result.stderr
    assert "Traceback" not in result.stderr
    assert local_references(docker_client, repository) == []
    assert registry_tags(registry, repository.split("/", 1)[1])[0] == 404
    assert not (dist_dir / names.IMAGE_JSON).exists()


@pytest.mark.docker
@pytest.mark.slow
def test_push_to_an_unreachable_registry_fails_before_building_and_keeps_no_old_image_json(
    docker_client, busybox_base, dist_dir, repositories
):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    repository = f"{address}/{unique('unreachable')}/proxyv2"
    repositories.append(repository)
    first = invoke("image", "--base", busybox_base, "--image", f"{repository}:first",
                   "--dist", str(dist_dir))  # fmt: skip
    assert first.returncode == 0, first.stderr
    record = json.loads((dist_dir / names.IMAGE_JSON).read_text())
    # The session's checkout is a local repository without a remote: no source to name.
    assert "org.opencontainers.image.source" not in record["labels"]

    again = invoke("image", "--base", busybox_base, "--image", f"{repository}:again",
                   "--dist", str(dist_dir), "--push")  # fmt: skip
    refused(again, f"registry {address} cannot be reached from the Docker engine (")
    assert "connection refused" in last_line(again.stderr)
    assert "nothing was built" in last_line(again.stderr)
    assert local_references(docker_client, repository) == [f"{repository}:first"]
    # image.json described the first image, not this run's: it must not outlive the run.
    assert not (dist_dir / names.IMAGE_JSON).exists()


def test_the_source_label_is_the_dists_own_remote_or_left_out(built_dist):
    assert "org.opencontainers.image.source" not in image.image_labels(built_dist, "1.10.6")
    remote = dataclasses.replace(built_dist, source_url="https://git.example.com/me/mosn.git")
    labels = image.image_labels(remote, "1.10.6")
    assert labels["org.opencontainers.image.source"] == "https://git.example.com/me/mosn.git"


def refused(result, message: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in last_line(result.stderr), result.stderr
    assert last_line(result.stderr).startswith("error: ")
    assert "Traceback" not in result.stderr


@pytest.mark.docker
def test_bare_image_name_is_refused_before_anything_is_built(docker_client, busybox_base, dist_dir):
    name = unique("bare")
    result = invoke("image", "--base", busybox_base, "--image", name, "--dist", str(dist_dir))
    refused(result, "has no registry or namespace")
    assert f"registry.example.com/mesh/{name}" in result.stderr
    assert local_references(docker_client, name) == []
    assert not (dist_dir / names.IMAGE_JSON).exists()


def test_unreachable_engine_is_one_line(dist_dir):
    result = invoke(
        "image", "--base", "b/b:1", "--image", f"example.invalid/{unique('noengine')}/p",
        "--dist", str(dist_dir), env={"DOCKER_HOST": "unix:///nonexistent"},
    )  # fmt: skip
    refused(result, "Docker engine not reachable at unix:///nonexistent")
    assert not (dist_dir / names.IMAGE_JSON).exists()


@pytest.mark.docker
def test_missing_base_image_says_how_to_get_it(docker_client, dist_dir):
    base = f"example.invalid/{unique('nobase')}:1"
    result = invoke(
        "image", "--base", base, "--image", f"example.invalid/{unique('x')}/p",
        "--dist", str(dist_dir),
    )  # fmt: skip
    refused(result, f"get it with `docker pull {base}`")


def test_missing_dist_and_missing_linux_tarball_are_refused(tmp_path, dist_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ("image", "--base", "b/b:1", "--image", "example.invalid/m/p")
    refused(invoke(*args, "--dist", str(empty)), "run `invoke build --out")
    assert list(empty.iterdir()) == []

    manifest = dist_dir / names.MANIFEST
    data = json.loads(manifest.read_text())
    data["files"] = [f for f in data["files"] if f["platform"] != "linux/amd64"]
    manifest.write_text(json.dumps(data))
    refused(invoke(*args, "--dist", str(dist_dir)), f"has no {names.LINUX_TARBALL}")

    shutil.rmtree(dist_dir)
    copy = tmp_path / "gone"
    refused(invoke(*args, "--dist", str(copy)), "holds no manifest.json")


# ---- a registry that wants a password -------------------------------------------------------


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory):
    work = tmp_path_factory.mktemp("auth-registry")
    with running_registry(work, credentials=("mp-user", "right-password-1")) as address:
        yield address


def push_as_mp_user(image_name: str, base: str, dist_dir, password: str):
    return invoke(
        "image", "--base", base, "--image", image_name, "--dist", str(dist_dir),
        "--push", "--registry-username", "mp-user", env={"REGISTRY_PASSWORD": password},
    )  # fmt: skip


@pytest.mark.docker
def test_refused_login_fails_before_building_and_hides_the_password(
    docker_client, busybox_base, auth_registry, dist_dir, repositories
):
    repository = f"{auth_registry}/{unique('login')}/proxyv2"
    repositories.append(repository)
    result = push_as_mp_user(repository, busybox_base, dist_dir, "wrong-password-9")
    refused(result, f"registry {auth_registry} refused login for mp-user")
    assert "wrong-password-9" not in result.stdout + result.stderr
    assert local_references(docker_client, repository) == []
    assert not (dist_dir / names.IMAGE_JSON).exists()


@pytest.mark.docker
def test_push_without_credentials_is_denied_and_records_nothing(
    docker_client, busybox_base, auth_registry, dist_dir, repositories, tmp_path
):
    repository = f"{auth_registry}/{unique('denied')}/proxyv2"
    repositories.append(repository)
    (tmp_path / "docker-config").mkdir()
    result = invoke(
        "image", "--base", busybox_base, "--image", f"{repository}:t", "--dist", str(dist_dir),
        "--push", env={"DOCKER_CONFIG": str(tmp_path / "docker-config")},
    )  # fmt: skip
    refused(result, f"push of {repository}:t failed")
    assert "authentication required" in last_line(result.stderr) or "no basic auth" in (
        last_line(result.stderr)
    )
    assert not (dist_dir / names.IMAGE_JSON).exists()
    status, _ = registry_tags_with_auth(auth_registry, repository)
    assert status == 404


def registry_tags_with_auth(address: str, repository: str) -> tuple[int, list[str]]:
    import requests

    path = repository.split("/", 1)[1]
    response = requests.get(
        f"http://{address}/v2/{path}/tags/list", auth=("mp-user", "right-password-1"), timeout=10
    )
    return response.status_code, (response.json().get("tags") or []) if response.ok else []


@pytest.mark.docker
def test_push_with_username_and_registry_password(
    docker_client, busybox_base, auth_registry, dist_dir, repositories
):
    repository = f"{auth_registry}/{unique('auth')}/proxyv2"
    repositories.append(repository)
    result = push_as_mp_user(f"{repository}:t", busybox_base, dist_dir, "right-password-1")
    assert result.returncode == 0, result.stderr
    assert "right-password-1" not in result.stdout + result.stderr
    assert registry_tags_with_auth(auth_registry, repository) == (200, ["t"])
    assert json.loads((dist_dir / names.IMAGE_JSON).read_text())["digest"].startswith("sha256:")


def test_username_without_password_is_refused(dist_dir):
    result = invoke(
        "image", "--base", "b/b:1", "--image", "example.invalid/m/p", "--dist", str(dist_dir),
        "--push", "--registry-username", "someone", env={"REGISTRY_PASSWORD": ""},
    )  # fmt: skip
    refused(result, "REGISTRY_PASSWORD is empty")


@pytest.mark.docker
def test_a_failed_later_tag_names_the_tags_already_pushed(
    docker_client, busybox_base, registry, repositories
):
    """All tags name one verified image, so a tag already pushed is whole; the error says
    which are there. Here the engine refuses the second push because that tag is gone."""
    repository = f"{registry}/{unique('partial')}/proxyv2"
    repositories.append(repository)
    unverified, image_id = engine.build_unverified(
        docker_client, busybox_base, None, {"test": "partial"}, repository, 0
    )
    engine.apply_tags(docker_client, unverified, image_id, repository, ["first"])
    result = image.ImageResult(repository, ["first", "second"], image_id, {})
    with pytest.raises(UserError) as caught:
        push_all(docker_client, result, None, [])
    message = str(caught.value)
    assert message.startswith(f"push of {repository}:second failed")
    assert "already pushed (verified, same image): first" in message
    path = repository.split("/", 1)[1]
    assert registry_tags(registry, path) == (200, ["first"])
    assert registry_digest(registry, path, "first") == result.digest


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (("--mode", "fast"), "--mode 'fast' is not one of quick, full"),
        (("--mode", "full", "--wasm", "skip"), "--wasm 'skip' is not one of placeholder, patch"),
        ((), "quick mode needs a base image: pass --base"),
        (("--mode", "full", "--istio-version", "1.9.0"), "stamped for Istio 1.10.6, not 1.9.0"),
    ],
)
def test_bad_choices_are_refused_before_the_engine_is_asked(dist_dir, extra, says):
    result = invoke(
        "image", "--image", "example.invalid/m/proxyv2", "--dist", str(dist_dir), *extra,
        env={"DOCKER_HOST": "unix:///nonexistent"},
    )  # fmt: skip
    refused(result, says)
    assert not (dist_dir / names.IMAGE_JSON).exists()


def test_image_json_reads_back_what_was_written(tmp_path):
    written = ImageResult("r.example/mesh/p", ["a", "b"], "sha256:1d", {"k": "v"}, "sha256:ab")
    written.write(tmp_path)
    read = ImageResult.load(tmp_path / names.IMAGE_JSON)
    assert read.as_json() == written.as_json()
    assert read.pinned == "r.example/mesh/p@sha256:ab"


@pytest.mark.parametrize("content", ["", "{", '{"image": 1}', '{"image": "r/p", "tags": "a"}'])
def test_a_corrupt_image_json_is_one_user_error(tmp_path, content):
    path = tmp_path / names.IMAGE_JSON
    path.write_text(content)
    with pytest.raises(UserError, match=r"is not an image.json this tool wrote .*`invoke image`"):
        ImageResult.load(path)
