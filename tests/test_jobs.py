"""Job configs: pure pieces and the CLI output users paste."""

import importlib.metadata
import json
import os
import platform
import shutil
import stat
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLE
from helpers import docker, job_runtime_env, raybake

from raybake.contract import LABEL_INPUT_HASH, LABEL_PYTHON
from raybake.errors import ToolError
from raybake.jobs import Client, check_client, entrypoint_command, on_this_machine


@pytest.mark.parametrize(("args", "expected"), [
    (["python", "main.py"], "/opt/venv/bin/python main.py"),
    (["python3", "-m", "app", "--x", "a b"], "/opt/venv/bin/python -m app --x 'a b'"),
    (["main.py"], "/opt/venv/bin/python main.py"),
    (["/opt/venv/bin/ray", "status"], "/opt/venv/bin/ray status"),
])
def test_entrypoint_names_the_image_interpreter(args, expected):
    assert entrypoint_command(args) == expected


def test_ray_format_is_submit_job_kwargs(copy_fixture, tmp_path):
    root = copy_fixture(EXAMPLE)
    out = raybake("job-config", "-C", str(root), "--entrypoint", "python -m ray_app",
                  "--stage-dir", str(tmp_path / "wd")).stdout
    config = json.loads(out)
    assert set(config) == {"entrypoint", "runtime_env", "metadata"}
    env = config["runtime_env"]
    assert env["working_dir"] == str(tmp_path / "wd")
    assert env["env_vars"]["PYTHONPATH"] == "src"
    assert env["config"] == {"setup_timeout_seconds": 600}
    # runtime_env image_uri cannot be combined with working_dir: never emitted.
    assert "image_uri" not in env
    assert config["metadata"]["raybake.image"].startswith("ray-app:default-")  # a local name: a local Ray
    assert (tmp_path / "wd" / "src" / "ray_app" / "__init__.py").is_file()


def test_a_workspace_job_has_each_members_import_root_on_pythonpath(copy_fixture, tmp_path):
    env = job_runtime_env(copy_fixture("workspace"), {}, tmp_path / "wd")
    assert env["env_vars"]["PYTHONPATH"] == "src:libs/liba/src:libs/libb/src"
    assert (tmp_path / "wd" / "libs" / "liba" / "src" / "liba" / "__init__.py").is_file()


@pytest.mark.parametrize("fmt", ["ray", "anyscale", "kuberay-cluster"])
def test_every_format_refuses_an_image_without_ray(copy_fixture, fmt):
    args = [] if fmt == "kuberay-cluster" else ["--entrypoint", "python main.py"]
    proc = raybake("job-config", "-C", str(copy_fixture("small")), "--format", fmt, *args, check=False,
                   env={**os.environ, "DOCKER_HOST": "unix:///nonexistent"})
    assert proc.returncode == 2 and "would have no Ray" in proc.stderr, proc.stderr
    assert "uv add 'ray[default]'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.engine
@pytest.mark.registry
def test_anyscale_format_names_the_pushed_image_and_the_staged_tree(pushed_example, tmp_path):
    root = tmp_path / "ray-app"
    shutil.copytree(pushed_example.root, root)
    # A private key caught by content only: `anyscale job submit` must never see the project directory.
    (root / "notes.txt").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n")
    # --no-image-check: the pushed stand-in has no OS to run the check in (tests/test_anyscale_image.py runs it).
    out = raybake("job-config", "-C", str(root), "--format", "anyscale", "--entrypoint", "python -m ray_app",
                  "--stage-dir", str(tmp_path / "wd"), "--no-image-check", env=pushed_example.env).stdout
    doc = yaml.safe_load(out)
    assert doc["image_uri"] == pushed_example.by_digest
    assert doc["entrypoint"] == "/opt/venv/bin/python -m ray_app"
    assert doc["working_dir"] == str(tmp_path / "wd") and "excludes" not in doc
    assert (tmp_path / "wd" / "main.py").is_file() and not (tmp_path / "wd" / "notes.txt").exists()
    anyscale_job(out)


def anyscale_job(text: str):
    """The YAML as `anyscale job submit -f` reads it: Anyscale's own model (unknown or mistyped fields fail)."""
    from anyscale.job.models import JobConfig

    return JobConfig.from_dict(yaml.safe_load(text))


@pytest.mark.engine
@pytest.mark.registry
def test_anyscale_options_come_from_the_spec_and_flags_and_validate_with_the_sdk(pushed_example, tmp_path):
    root = tmp_path / "ray-app"
    shutil.copytree(pushed_example.root, root)
    with (root / "images" / "default.yaml").open("a") as f:  # neutral fields: the tag stays the pushed one
        f.write("registry_login_secret: arn:aws:secretsmanager:us-west-2:1:secret:reg\n"
                "compute_config: cpu-small:2\ncloud: spec-cloud\nmax_retries: 1\n")
    args = ("job-config", "-C", str(root), "--format", "anyscale", "--entrypoint", "python main.py",
            "--stage-dir", str(tmp_path / "wd"), "--no-image-check")  # the stand-in has no OS to check
    job = anyscale_job(raybake(*args, env=pushed_example.env).stdout)
    assert (job.registry_login_secret, job.compute_config, job.cloud, job.max_retries) == (
        "arn:aws:secretsmanager:us-west-2:1:secret:reg", "cpu-small:2", "spec-cloud", 1)
    assert job.image_uri == pushed_example.by_digest and job.env_vars == {"PYTHONPATH": "src"}
    job = anyscale_job(raybake(*args, "--cloud", "flag-cloud", "--max-retries", "0",
                               env=pushed_example.env).stdout)
    assert (job.cloud, job.max_retries, job.compute_config) == ("flag-cloud", 0, "cpu-small:2")


def test_anyscale_flags_go_with_the_anyscale_format_only(copy_fixture):
    proc = raybake("job-config", "-C", str(copy_fixture(EXAMPLE)), "--entrypoint", "python main.py",
                   "--cloud", "c", check=False)
    assert proc.returncode == 2 and "--cloud go with --format anyscale only" in proc.stderr, proc.stderr


def test_max_retries_must_not_be_negative(copy_fixture):
    root = copy_fixture(EXAMPLE)
    with (root / "images" / "default.yaml").open("a") as f:
        f.write("max_retries: -1\n")
    proc = raybake("tag", "-C", str(root), check=False)
    assert proc.returncode == 2 and "max_retries must be 0 or more" in proc.stderr, proc.stderr


def test_job_config_uses_the_pin(copy_fixture, tmp_path):
    root = copy_fixture(EXAMPLE)
    assert "it did not exist" in raybake("pin", "-C", str(root)).stderr  # a failing pin fails the test
    pin = json.loads((root / "raybake-pin.json").read_text())
    pin["images"] = {"default": "ray-app:default-0123456789abcdef"}
    (root / "raybake-pin.json").write_text(json.dumps(pin, indent=2, sort_keys=True) + "\n")
    config = json.loads(raybake("job-config", "-C", str(root), "--entrypoint", "python x.py",
                                "--stage-dir", str(tmp_path / "wd")).stdout)
    assert config["metadata"]["raybake.image"] == "ray-app:default-0123456789abcdef"


def test_job_config_warns_when_the_pin_is_stale(copy_fixture, tmp_path):
    root = copy_fixture(EXAMPLE)
    raybake("pin", "-C", str(root), check=False)
    current = raybake("tag", "-C", str(root)).stdout.strip()
    args = ("job-config", "-C", str(root), "--entrypoint", "python x.py", "--stage-dir", str(tmp_path / "wd"))
    assert "raybake-pin.json" not in raybake(*args).stderr  # a current pin: no word
    pin = json.loads((root / "raybake-pin.json").read_text())
    pin["images"]["default"] = "ray-app:default-0123456789abcdef"  # as after a lock change without `raybake pin`
    (root / "raybake-pin.json").write_text(json.dumps(pin, indent=2, sort_keys=True) + "\n")
    stderr = raybake(*args).stderr
    assert f"raybake-pin.json names ray-app:default-0123456789abcdef for spec 'default', but the current lock " \
           f"and settings give {current}" in stderr
    assert "raybake pin" in stderr


def test_submit_refuses_an_image_without_ray_before_starting_anything(copy_fixture):
    """small locks no Ray: no build, no head container, no traceback."""
    proc = raybake("submit", "-C", str(copy_fixture("small")), "--", "python", "main.py", check=False,
                   env={**os.environ, "DOCKER_HOST": "unix:///nonexistent", "RAY_ADDRESS": ""})
    assert proc.returncode == 2, proc.stderr
    assert "would have no Ray" in proc.stderr and "uv add 'ray[default]'" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---- the client's Ray and Python against the image's ----

CLIENT_RAY = importlib.metadata.version("ray")  # raybake's environment is the job client
CLIENT_PYTHON = platform.python_version()


def example_locking_another_ray(copy_fixture) -> tuple[Path, str]:
    """A copy of the example whose pyproject and lock (kept current) pin a Ray other than the client's."""
    root = copy_fixture(EXAMPLE)
    locked = next(p["version"] for p in tomllib.loads((root / "uv.lock").read_text())["package"]
                  if p["name"] == "ray")
    other = "2.59.0" if CLIENT_RAY != "2.59.0" else "2.58.0"
    for name in ("pyproject.toml", "uv.lock"):
        path = root / name
        assert locked in path.read_text()
        path.write_text(path.read_text().replace(locked, other))
    return root, other


def other_python() -> str:
    return "3.12" if not CLIENT_PYTHON.startswith("3.12.") else "3.13"


def test_job_config_warns_of_a_client_with_another_ray(copy_fixture, tmp_path):
    """job-config only writes a file, which may be submitted from elsewhere: a warning, the config written."""
    root, image_ray = example_locking_another_ray(copy_fixture)
    proc = raybake("job-config", "-C", str(root), "--entrypoint", "python main.py",
                   "--stage-dir", str(tmp_path / "wd"), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["entrypoint"] == "/opt/venv/bin/python main.py"
    assert f"Ray here is {CLIENT_RAY}, the image has Ray {image_ray}" in proc.stderr
    assert f"ray[default]=={image_ray}" in proc.stderr and "Traceback" not in proc.stderr
    # A RayJob is submitted from inside the cluster, with the image's own Ray: no client to refuse
    # (its local image name is refused, as for any cluster).
    proc = raybake("job-config", "-C", str(root), "--format", "kuberay", "--entrypoint", "python main.py",
                   "--working-dir-uri", "https://example.com/wd.zip", "--stage-dir", str(tmp_path / "wd"),
                   check=False)
    assert "is a local name" in proc.stderr and "Ray here is" not in proc.stderr


def test_submit_to_a_cluster_refuses_a_client_with_another_ray_before_building(copy_fixture):
    """With --address the job client is raybake's own Ray (raybake's local head uses the image's)."""
    root, image_ray = example_locking_another_ray(copy_fixture)
    proc = raybake("submit", "-C", str(root), "--address", "http://127.0.0.1:1", "--", "python", "main.py",
                   check=False, env={**os.environ, "DOCKER_HOST": "unix:///nonexistent", "RAY_ADDRESS": ""})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"Ray here is {CLIENT_RAY}, the image has Ray {image_ray}" in proc.stderr
    assert "Docker" not in proc.stderr and "Traceback" not in proc.stderr  # refused before any build


def test_submit_refuses_and_job_config_warns_of_a_client_with_another_python(copy_fixture, tmp_path):
    root = copy_fixture(EXAMPLE)
    (root / ".python-version").write_text(f"{other_python()}\n")
    wanted = f"Python here is {CLIENT_PYTHON}, the image's is {other_python()}"
    config = raybake("job-config", "-C", str(root), "--entrypoint", "python main.py",
                     "--stage-dir", str(tmp_path / "wd"), check=False)
    submitted = raybake("submit", "-C", str(root), "--address", "http://127.0.0.1:1", "--", "python", "main.py",
                        check=False, env={**os.environ, "DOCKER_HOST": "unix:///nonexistent", "RAY_ADDRESS": ""})
    assert submitted.returncode == 2, submitted.stdout + submitted.stderr
    assert config.returncode == 0, config.stdout + config.stderr
    for proc in (config, submitted):
        assert wanted in proc.stderr and f"--python {other_python()}" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_client_outside_requires_python_is_refused():
    with pytest.raises(ToolError, match="outside the project's requires-python"):
        check_client(Client(ray="2.60.0", python="3.11.7"), image_ray="2.60.0", image_python=None,
                     requires_python=">=3.12")
    # Unknown image Python within requires-python, or no Ray here to compare: nothing is known to differ.
    check_client(Client(ray="2.60.0", python="3.12.1"), image_ray="2.60.0", image_python=None,
                 requires_python=">=3.12")
    check_client(Client(ray=None, python="3.12.1"), image_ray="2.60.0", image_python="3.12", requires_python=None)


@pytest.mark.engine
def test_job_config_reads_the_image_python_from_its_label(engine, copy_fixture, unique_repo, tmp_path):
    """Without a Python in the spec, the image's label tells it."""
    root = copy_fixture(EXAMPLE)
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    reference = raybake("tag", "-C", str(root), env=env).stdout.strip()
    (tmp_path / "ctx").mkdir()
    # The input-hash label marks it as raybake's build under that tag (its first 16 digits suffice).
    (tmp_path / "ctx" / "Dockerfile").write_text(
        f'FROM {engine.base_image}\nLABEL {LABEL_INPUT_HASH}="{reference.rsplit("-", 1)[-1]}" '
        f'{LABEL_PYTHON}="{other_python()}.1"\n')
    docker("buildx", "build", "--load", "-t", reference, str(tmp_path / "ctx"))
    try:
        proc = raybake("job-config", "-C", str(root), "--entrypoint", "python main.py",
                       "--stage-dir", str(tmp_path / "wd"), env=env, check=False)
    finally:
        docker("image", "rm", reference, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Python here is {CLIENT_PYTHON}, the image's is {other_python()}.1" in proc.stderr
    # The image gone, nothing tells the Python: no warning.
    proc = raybake("job-config", "-C", str(root), "--entrypoint", "python main.py",
                   "--stage-dir", str(tmp_path / "wd"), env=env)
    assert "Python here is" not in proc.stderr


@pytest.mark.engine
@pytest.mark.registry
def test_anyscale_format_takes_a_working_dir_uri(pushed_example, tmp_path):
    doc = yaml.safe_load(raybake("job-config", "-C", str(pushed_example.root), "--format", "anyscale",
                                 "--entrypoint", "python -m ray_app", "--working-dir-uri",
                                 "file:///shared/small-1.zip", "--stage-dir", str(tmp_path / "wd"),
                                 "--no-image-check", env=pushed_example.env).stdout)
    assert doc["working_dir"] == "file:///shared/small-1.zip" and "excludes" not in doc
    anyscale_job(yaml.safe_dump(doc))


def staged_small(copy_fixture, tmp_path, *extra: bytes):
    """The small fixture staged, with an extra file under each name in ``extra`` (bytes: any name the OS takes)."""
    from raybake.stage import stage_tree

    root = copy_fixture("small")
    for name in extra:
        with open(os.path.join(os.fsencode(root), name), "wb") as f:
            f.write(b"data\n")
    return stage_tree(root, tmp_path / "staged", members=[], roots=[])


def test_the_working_dir_zip_never_replaces_what_is_not_a_regular_file(copy_fixture, tmp_path):
    from raybake.errors import JobConfigError
    from raybake.jobs import write_working_dir_zip

    staged = staged_small(copy_fixture, tmp_path)
    pipe = tmp_path / "wd.zip"
    os.mkfifo(pipe)  # as a device node would be: not a file to replace
    with pytest.raises(JobConfigError, match="named pipe") as err:
        write_working_dir_zip(staged, pipe)
    assert "--working-dir-zip" in err.value.fix
    assert stat.S_ISFIFO(pipe.lstat().st_mode)
    link = tmp_path / "link.zip"
    link.symlink_to(tmp_path / "target.zip")
    with pytest.raises(JobConfigError, match="symbolic link"):
        write_working_dir_zip(staged, link)
    assert link.is_symlink() and not (tmp_path / "target.zip").exists()


def test_the_working_dir_zip_goes_into_a_directory_made_for_it(copy_fixture, tmp_path):
    import zipfile

    from raybake.jobs import write_working_dir_zip

    out = write_working_dir_zip(staged_small(copy_fixture, tmp_path), tmp_path / "new" / "dir" / "wd.zip")
    assert "working_dir/pyproject.toml" in zipfile.ZipFile(out).namelist()


def test_a_file_name_that_is_not_utf8_is_named_not_a_crash(copy_fixture, tmp_path):
    from raybake.errors import JobConfigError
    from raybake.jobs import write_working_dir_zip

    staged = staged_small(copy_fixture, tmp_path, b"caf\xe9.txt")  # Latin-1 on a UTF-8 system
    with pytest.raises(JobConfigError, match=r"caf\\xe9\.txt") as err:
        write_working_dir_zip(staged, tmp_path / "wd.zip")
    assert "rename" in err.value.fix
    assert not (tmp_path / "wd.zip").exists()


@pytest.mark.parametrize(("address", "here"), [
    ("http://127.0.0.1:8265", True), ("127.0.0.1:6379", True), ("ray://localhost:10001", True),
    ("http://[::1]:8265", True), ("auto", True), ("http://ray-head.example.invalid:8265", False),
    ("ray-head.example.invalid:6379", False)])
def test_on_this_machine_reads_the_host_of_every_ray_address_form(address, here):
    assert on_this_machine(address) is here


def test_submit_to_a_cluster_elsewhere_refuses_a_local_image_name_before_building(copy_fixture):
    """A Ray cluster on another machine pulls the image from a registry (never contacted here)."""
    proc = raybake("submit", "-C", str(copy_fixture(EXAMPLE)), "--address", "http://ray-head.example.invalid:8265",
                   "--", "python", "main.py", check=False,
                   env={**os.environ, "DOCKER_HOST": "unix:///nonexistent", "RAY_ADDRESS": ""})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "is a local name" in proc.stderr and "raybake build --push" in proc.stderr
    assert "Docker daemon" not in proc.stderr and "Traceback" not in proc.stderr


def test_anyscale_format_names_the_python_packages_anyscale_requires_that_the_lock_lacks(copy_fixture):
    proc = raybake("job-config", "-C", str(copy_fixture(EXAMPLE)), "--format", "anyscale",
                   "--entrypoint", "python main.py", check=False)
    assert "lacks Python packages Anyscale's image requirements list: anyscale, boto3" in proc.stderr, proc.stderr
    assert "uv add anyscale boto3 google-cloud-storage jupyterlab" in proc.stderr


# What a Ray node (2.60, ray/_private/runtime_env/protocol.py) needs in the image to fetch each scheme.
FETCHED_WITH = {"gs": ["google-cloud-storage", "smart-open"],
                "azure": ["azure-identity", "azure-storage-blob", "smart-open"],
                "abfss": ["adlfs", "azure-identity"]}


@pytest.mark.parametrize("scheme", FETCHED_WITH)
def test_a_working_dir_uri_needs_the_packages_ray_fetches_its_scheme_with(scheme):
    from raybake.errors import ProjectError
    from raybake.jobs import check_remote_working_dir

    uri = f"{scheme}://bucket/wd.zip"
    needed = FETCHED_WITH[scheme]
    for absent in needed:
        locked = {name: "1" for name in needed if name != absent}
        with pytest.raises(ProjectError, match=f"Ray fetches {scheme}:// URIs with {absent}, ") as info:
            check_remote_working_dir(uri, locked, "default")
        assert f"uv add {absent}" in info.value.fix
    check_remote_working_dir(uri, dict.fromkeys(needed, "1"), "default")  # all there: no error
