"""working_dir packages uploaded content-addressed (`raybake stage --upload`,
`raybake job-config --upload`, [tool.raybake] upload) to real servers on
127.0.0.1: an S3-compatible one (moto) and a Google Cloud Storage emulator,
and to a shared directory (file://)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import BUCKET, EXAMPLE
from helpers import raybake

from raybake.localcluster import free_port


@pytest.fixture(scope="module")
def gcs():
    """A Google Cloud Storage emulator on loopback with the bucket BUCKET: the environment that points clients there."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    env = {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}", "GOOGLE_CLOUD_PROJECT": "raybake-test"}
    try:
        yield env
    finally:
        server.stop()


@pytest.fixture
def example(copy_fixture) -> Path:
    return copy_fixture(EXAMPLE)


def _read(uri: str, env: dict[str, str], s3_client=None) -> bytes:
    scheme, _, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    if scheme == "s3":
        return s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    if scheme == "gs":
        from google.cloud import storage

        os.environ.update(env)  # the emulator's address, read by the client
        return storage.Client().bucket(bucket).blob(key).download_as_bytes()
    return Path(uri.removeprefix("file://")).read_bytes()


@pytest.mark.parametrize("scheme", ["s3", "gs", "file"])
def test_stage_upload_is_content_addressed_and_skips_what_is_there(scheme, s3, gcs, example, tmp_path,
                                                                    monkeypatch):
    env, prefix = {
        "s3": (s3[0], f"s3://{BUCKET}/apps"),
        "gs": (gcs, f"gs://{BUCKET}/apps/"),
        "file": ({}, f"file://{tmp_path}/shared"),
    }[scheme]
    if scheme == "file":
        (tmp_path / "shared").mkdir()
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    run_env = {**os.environ, **env}

    def stage() -> tuple[str, str]:
        proc = raybake("stage", "-C", str(example), "--upload", prefix, "--out", str(tmp_path / "wd"), env=run_env)
        return proc.stdout, proc.stderr

    out, err = stage()
    uri = out.strip()
    assert out == uri + "\n"  # stdout is the URI alone, for scripts
    assert re.fullmatch(rf"{re.escape(prefix.rstrip('/'))}/ray-app-[0-9a-f]{{16}}\.zip", uri), uri
    assert f"uploaded: {uri}" in err
    package = _read(uri, env, s3[1])
    names = zipfile.ZipFile(io.BytesIO(package)).namelist()
    assert "working_dir/main.py" in names and "working_dir/src/ray_app/stats.py" in names
    # The same tree: the same name, not uploaded again.
    out, err = stage()
    assert out.strip() == uri and "already there, not uploaded again" in err
    # New content: a new name (Ray caches a package by its URI), the old object stays.
    (example / "main.py").write_text((example / "main.py").read_text() + "\n# edited\n")
    edited = stage()[0].strip()
    assert edited != uri and _read(uri, env, s3[1]) == package
    assert b"# edited" in zipfile.ZipFile(io.BytesIO(_read(edited, env, s3[1]))).read("working_dir/main.py")


def test_an_object_already_under_the_name_is_not_uploaded_again(s3, example, tmp_path):
    env, client = s3
    run_env = {**os.environ, **env}
    uri = raybake("stage", "-C", str(example), "--upload", f"s3://{BUCKET}/keep", env=run_env).stdout.strip()
    key = uri.removeprefix(f"s3://{BUCKET}/")
    client.put_object(Bucket=BUCKET, Key=key, Body=b"placed by someone else")
    assert raybake("stage", "-C", str(example), "--upload", f"s3://{BUCKET}/keep", env=run_env).stdout.strip() == uri
    assert client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"placed by someone else"


@pytest.mark.engine
@pytest.mark.registry
def test_job_config_puts_the_uploaded_uri_in_every_format(pushed_example, tmp_path):
    """Every job format (the cluster ones name the pushed image, hence the registry)."""
    example = tmp_path / "ray-app"
    shutil.copytree(pushed_example.root, example)
    env = pushed_example.env
    shared = tmp_path / "shared"
    shared.mkdir()
    prefix = f"file://{shared}"
    uri = raybake("stage", "-C", str(example), "--upload", prefix, env=env).stdout.strip()
    docs = {
        "ray": json.loads(raybake("job-config", "-C", str(example), "--entrypoint", "python main.py",
                                  "--upload", prefix, env=env).stdout)["runtime_env"],
        "anyscale": yaml.safe_load(raybake("job-config", "-C", str(example), "--format", "anyscale",
                                           "--entrypoint", "python main.py", "--upload", prefix,
                                           "--no-image-check", env=env).stdout),  # the stand-in has no OS
        "kuberay": yaml.safe_load(yaml.safe_load(raybake(
            "job-config", "-C", str(example), "--format", "kuberay", "--entrypoint", "python main.py",
            "--upload", prefix, env=env).stdout)["spec"]["runtimeEnvYAML"]),
        "kuberay-service": yaml.safe_load(yaml.safe_load(raybake(
            "job-config", "-C", str(example), "--format", "kuberay-service", "--serve-import-path",
            "ray_app.serve:app", "--upload", prefix, env=env).stdout)["spec"]["serveConfigV2"])["applications"][0]["runtime_env"],
    }
    assert {fmt: doc["working_dir"] for fmt, doc in docs.items()} == dict.fromkeys(docs, uri)
    # [tool.raybake] upload: the same without the flag.
    with (example / "pyproject.toml").open("a") as f:
        f.write(f'\n[tool.raybake]\nupload = "{prefix}"\n')
    rayjob = yaml.safe_load(raybake("job-config", "-C", str(example), "--format", "kuberay",
                                    "--entrypoint", "python main.py", env=env).stdout)
    edited = yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])["working_dir"]  # pyproject.toml ships too
    assert edited != uri and raybake("stage", "-C", str(example), "--upload", prefix, env=env).stdout.strip() == edited
    assert sorted(p.name for p in shared.iterdir()) == sorted(u.rsplit("/", 1)[1] for u in (uri, edited))


def test_an_upload_the_image_cannot_fetch_is_refused_before_uploading(s3, example):
    env, client = s3
    proc = raybake("job-config", "-C", str(example), "--format", "kuberay", "--entrypoint", "python main.py",
                   "--upload", f"s3://{BUCKET}/refused", env={**os.environ, **env}, check=False)
    # The example locks smart-open but not boto3, with which a Ray node fetches s3:// URIs.
    assert proc.returncode == 2 and "boto3" in proc.stderr and "uv add boto3" in proc.stderr, proc.stderr
    assert client.list_objects_v2(Bucket=BUCKET, Prefix="refused").get("KeyCount") == 0


@pytest.mark.parametrize("prefix", ["https://example.com/wd", "s3://", "file://relative/dir", "/tmp/dir"])
def test_a_prefix_raybake_cannot_upload_to_is_refused(example, prefix):
    proc = raybake("stage", "-C", str(example), "--upload", prefix, check=False)
    assert proc.returncode == 2 and "not a place raybake uploads to" in proc.stderr, proc.stderr
    assert "fix:" in proc.stderr.lower() and "Traceback" not in proc.stderr


def test_a_403_to_the_existence_check_is_a_missing_object_then_uploaded(tmp_path, monkeypatch):
    """S3 answers HEAD of a missing key with 403 to credentials that may get and put
    objects but not list the bucket (what the upload error's fix asks for): the
    package is uploaded, not refused. (A stand-in client: moto does not enforce IAM.)"""
    import boto3
    from botocore.exceptions import ClientError

    from raybake.tools.storage import put_if_absent

    uploaded = []

    class WriteOnly:
        def head_object(self, Bucket, Key):  # noqa: N803 - boto3's names
            raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")

        def upload_file(self, filename, bucket, key):
            uploaded.append((bucket, key))

    monkeypatch.setattr(boto3, "client", lambda *args, **kwargs: WriteOnly())
    package = tmp_path / "wd.zip"
    package.write_bytes(b"zip")
    assert put_if_absent("s3://bucket/jobs/wd.zip", package) is True
    assert uploaded == [("bucket", "jobs/wd.zip")]
