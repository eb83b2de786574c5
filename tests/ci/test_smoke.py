"""The foundation: config layering and the built stand-in dist."""

import subprocess
import tarfile

from ci import config, names


def test_flags_override_environment_override_file():
    file_layer = {"istio_version": "1.9.0", "platforms": ["linux/amd64"], "dist": "a"}
    environ = {"MOSN_PROXYV2_ISTIO_VERSION": "1.10.5", "MOSN_SRC": "/src"}
    s = config.load(file_layer, {"istio_version": "1.10.6", "dist": None}, environ)
    assert (s.istio_version, s.mosn_src, s.dist, s.platforms) == (
        "1.10.6",
        "/src",
        "a",
        ("linux/amd64",),
    )


def test_secret_settings_do_not_show_in_repr():
    s = config.load({}, {}, {"ARTIFACT_TOKEN": "s3cr3t-value", "REGISTRY_PASSWORD": "pw-123456"})
    assert s.token == "s3cr3t-value"
    assert "s3cr3t" not in repr(s) and "pw-123456" not in repr(s)


def test_built_linux_tarball_runs_and_reports_both_stamps(built_dist, tmp_path):
    with tarfile.open(built_dist.path(names.LINUX_TARBALL)) as tar:
        assert tar.getnames() == [names.BINARY_PATH_IN_TARBALL]
    subprocess.run(["tar", "xzf", built_dist.path(names.LINUX_TARBALL), "-C", tmp_path], check=True)
    binary = tmp_path / names.BINARY_PATH_IN_TARBALL
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout == f"mosn version {built_dist.mosn_version}\n"
    istio = subprocess.run([binary, "--istio-version"], capture_output=True, text=True, check=True)
    assert istio.stdout.strip() == "1.10.6"
