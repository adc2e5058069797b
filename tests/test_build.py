"""`raybake build` on the real engine and registry, with small real projects."""

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from helpers import docker, raybake

from raybake.errors import RegistryError
from raybake.jobs import cluster_image
from raybake.planner import identities_for
from raybake.project import load_project
from raybake.tools.uv import uv_bin

pytestmark = pytest.mark.engine


def ref_of(stdout: str) -> str:
    return stdout.split()[0]


def test_build_then_skip_until_the_lock_changes(engine, copy_fixture, unique_repo):
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    first = raybake("build", "-C", str(root), env=env)
    ref = ref_of(first.stdout)
    assert re.fullmatch(rf"{unique_repo}:default-[0-9a-f]{{16}}", ref)
    assert " built " in first.stdout
    assert "uv sync" in first.stderr  # BuildKit's progress is shown
    # The dependency is in the image's environment; the project is not.
    out = docker("run", "--rm", "--network", "none", ref, "python", "-c",
                 "import six, importlib.util as u; print(six.__version__, u.find_spec('small'))").stdout
    assert out.split() == ["1.17.0", "None"]

    # No-op and source-only change: no build, same tag.
    (root / "src/small/__init__.py").write_text("def main():\n    print('edited')\n")
    again = raybake("build", "-C", str(root), env=env)
    assert again.stdout.split()[:4] == [ref, "up", "to", "date"]
    assert "building" not in again.stderr

    # The lock changes: a new tag is built.
    text = (root / "pyproject.toml").read_text().replace('dev = ["iniconfig==2.0.0"]', 'dev = ["iniconfig==2.1.0"]')
    (root / "pyproject.toml").write_text(text)
    stale = raybake("build", "-C", str(root), env=env, check=False)
    assert stale.returncode == 2 and "out of date" in stale.stderr and "uv lock" in stale.stderr
    subprocess.run([str(uv_bin()), "lock", "-q"], cwd=root, check=True)
    third = raybake("build", "-C", str(root), env=env)
    assert ref_of(third.stdout) != ref and " built " in third.stdout


@pytest.mark.registry
def test_push_and_registry_skip(engine, copy_fixture, unique_repo):
    root = copy_fixture("small")
    repo = f"{engine.registry}/{unique_repo}"
    env = engine.env(RAYBAKE_REPOSITORY=repo)
    pushed = raybake("build", "--push", "-C", str(root), env=env)
    ref = ref_of(pushed.stdout)
    assert "built and pushed" in pushed.stdout
    assert re.search(rf"{re.escape(repo)}@sha256:[0-9a-f]{{64}}", pushed.stdout)
    docker("buildx", "imagetools", "inspect", ref)
    # Gone from the local store, present in the registry: nothing is rebuilt.
    docker("image", "rm", ref)
    again = raybake("build", "--push", "-C", str(root), env=env)
    assert "up to date" in again.stdout and "building" not in again.stderr


def test_two_clean_builds_give_the_same_digest(engine, copy_fixture, unique_repo):
    """Every layer is reproducible: the base, a pinned layer (six) and the sync layer (the extra)."""
    root = copy_fixture("small")
    with (root / "pyproject.toml").open("a") as f:
        f.write('\n[tool.raybake]\nheavy_packages = ["six"]\nextras = ["table"]\n')
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    images = []
    for _ in range(2):
        raybake("build", "--force", "--no-cache", "-C", str(root), env=env)
        ref = raybake("tag", "-C", str(root), env=env).stdout.strip()
        images.append(docker("image", "inspect", "--format", "{{.Id}} {{json .RootFS.Layers}}", ref).stdout.strip())
        time.sleep(1.1)  # file times would differ by at least a second if they leaked into a layer
    assert images[0] == images[1]
    # Each layer byte-compiled what it installed: no module is left without its .pyc.
    probe = ("import importlib.util as u, pathlib, sysconfig; "
             "site = pathlib.Path(sysconfig.get_paths()['purelib']); "
             "print([str(p) for p in site.rglob('*.py') if not pathlib.Path(u.cache_from_source(p)).exists()])")
    assert docker("run", "--rm", "--network", "none", ref, "python", "-c", probe).stdout.strip() == "[]"


def test_workspace_installs_members_dependencies_not_members(engine, copy_fixture, unique_repo):
    root = copy_fixture("workspace")
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    ref = ref_of(raybake("build", "-C", str(root), env=env).stdout)
    out = docker("run", "--rm", "--network", "none", ref, "python", "-c",
                 "import six, tabulate, importlib.util as u; "
                 "print([u.find_spec(m) for m in ('liba', 'libb', 'wsroot')])").stdout
    assert out.strip() == "[None, None, None]"


# ---- only raybake's own image counts as built (the input-hash label) ----

def foreign_image(reference: str, tmp_path, input_hash: str | None) -> str:
    """A tiny image that raybake did not build, tagged ``reference``; its ID."""
    import tarfile

    archive = tmp_path / "foreign.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("foreign.txt")
        tar.addfile(info)
    change = ["--change", f"LABEL dev.raybake.input-hash={input_hash}"] if input_hash else []
    return docker("import", *change, str(archive), reference).stdout.strip()


def input_hash_of(reference: str) -> str:
    return docker("image", "inspect", "--format", '{{index .Config.Labels "dev.raybake.input-hash"}}',
                  reference).stdout.strip()


def test_a_foreign_image_under_the_tag_is_built_over(engine, copy_fixture, unique_repo, tmp_path):
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    ref = raybake("tag", "-C", str(root), env=env).stdout.strip()
    foreign = foreign_image(ref, tmp_path, None)  # `docker tag SOMETHING $(raybake tag)`
    try:
        proc = raybake("build", "-C", str(root), env=env)
    finally:
        docker("image", "rm", foreign, check=False)  # untagged by the build: unique_repo misses it
    assert " built " in proc.stdout, proc.stdout
    assert f"the image under {ref} is not raybake's build" in proc.stderr and "label is (none)" in proc.stderr
    assert input_hash_of(ref).startswith(ref.rsplit("-", 1)[1])
    # Now raybake's own: up to date.
    assert " up to date " in raybake("build", "-C", str(root), env=env).stdout


def test_an_image_built_from_raybakes_image_is_not_raybakes(engine, copy_fixture, unique_repo, tmp_path):
    """It inherits the input-hash label; only the image raybake verified, by ID, counts."""
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    ref = raybake("build", "-C", str(root), env=env).stdout.split()[0]
    verified_id = docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(f"FROM {ref}\nRUN echo planted > /opt/planted\n")
    docker("buildx", "build", "--quiet", "--network", "none", "--load", "-t", ref, str(tmp_path / "ctx"))
    planted_id = docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
    try:
        assert input_hash_of(ref).startswith(ref.rsplit("-", 1)[1])  # the label came along
        proc = raybake("build", "-C", str(root), env=env)
        assert " built " in proc.stdout and "did not verify that image" in proc.stderr, proc.stdout + proc.stderr
        assert docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip() == verified_id
        assert " up to date " in raybake("build", "-C", str(root), env=env).stdout
        # As on a machine that pulled the image: no record here, until `raybake verify` passes.
        (Path(os.environ["RAYBAKE_CACHE_DIR"]) / "verified" / f"{verified_id.removeprefix('sha256:')}.json").unlink()
        assert "did not verify that image" in raybake("build", "-C", str(root), env=env).stderr
        (Path(os.environ["RAYBAKE_CACHE_DIR"]) / "verified" / f"{verified_id.removeprefix('sha256:')}.json").unlink()
        raybake("verify", ref, "-C", str(root), env=env)
        assert " up to date " in raybake("build", "-C", str(root), env=env).stdout
    finally:
        docker("image", "rm", planted_id, check=False)


@pytest.mark.registry
def test_a_foreign_image_in_the_registry_is_an_error_naming_both_hashes(engine, copy_fixture, unique_repo,
                                                                       tmp_path):
    root = copy_fixture("small")
    repo = f"{engine.registry}/{unique_repo}"
    env = engine.env(RAYBAKE_REPOSITORY=repo)
    ref = raybake("tag", "-C", str(root), env=env).stdout.strip()
    other = "0" * 64
    foreign_image(ref, tmp_path, other)
    docker("push", ref)
    docker("image", "rm", ref)
    for args in (("build", "--push"), ("build",)):
        proc = raybake(*args, "-C", str(root), env=env, check=False)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert f"label is {other}" in proc.stderr and ref.rsplit("-", 1)[1] in proc.stderr, proc.stderr
        assert "raybake build --push --force" in proc.stderr
        assert "raybake: building" not in proc.stderr
    # Job configs name no such image (small has no Ray for job-config itself: its library call).
    project = load_project(root)
    (plan,) = identities_for(project, environ=env)
    with pytest.raises(RegistryError, match=f"label is {other}"):
        cluster_image(project, plan, "a job config")
    # The fix it names: push this plan's image over it; the job config then names that image's digest.
    pushed = raybake("build", "--push", "--force", "-C", str(root), env=env).stdout
    digest_ref = re.search(rf"{re.escape(repo)}@sha256:[0-9a-f]{{64}}", pushed).group(0)
    assert cluster_image(project, plan, "a job config") == digest_ref
    assert digest_ref in raybake("build", "--push", "-C", str(root), env=env).stdout  # up to date, by digest


@pytest.mark.registry
def test_an_image_pushed_over_the_tag_from_raybakes_image_is_refused(engine, copy_fixture, unique_repo, tmp_path):
    """Built FROM raybake's pushed image, it has the right label; only the digest
    raybake pushed, with its verification record beside it, counts."""
    root = copy_fixture("small")
    repo = f"{engine.registry}/{unique_repo}"
    env = engine.env(RAYBAKE_REPOSITORY=repo)
    pushed = raybake("build", "--push", "-C", str(root), env=env).stdout
    ref = pushed.split()[0]
    digest_ref = re.search(rf"{re.escape(repo)}@sha256:[0-9a-f]{{64}}", pushed).group(0)
    project = load_project(root)
    (plan,) = identities_for(project, environ=env)
    assert cluster_image(project, plan, "a job config") == digest_ref
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(f"FROM {ref}\nRUN echo planted > /opt/planted\n")
    docker("buildx", "build", "--quiet", "--network", "none", "--load", "-t", ref, str(tmp_path / "ctx"))
    planted_id = docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
    try:
        docker("push", ref)
        proc = raybake("build", "--push", "-C", str(root), env=env, check=False)
        assert proc.returncode == 2, (proc.stdout, proc.stderr)
        assert "no raybake verification record for that digest" in proc.stderr, proc.stderr
        assert "raybake build --push --force" in proc.stderr
        with pytest.raises(RegistryError, match="no raybake verification record"):
            cluster_image(project, plan, "a job config")
        # The fix it names: the verified image (the same digest) and its record are back.
        raybake("build", "--push", "--force", "-C", str(root), env=env)
        assert cluster_image(project, plan, "a job config") == digest_ref
    finally:
        docker("image", "rm", planted_id, check=False)


# ---- several specs: keep going, summarise; --keep-failed ----

def test_build_all_keeps_going_past_failures_and_summarises(engine, copy_fixture, unique_repo):
    root = copy_fixture("small")
    (root / "images").mkdir()
    # Sorted by name, both failures come before the good spec.
    (root / "images/a-rejected.yaml").write_text('env:\n  RAY_ENABLE_UV_RUN_RUNTIME_ENV: "1"\n')
    (root / "images/b-broken.yaml").write_text("base_image: 127.0.0.1:1/absent/base:1\n")
    (root / "images/c-good.yaml").write_text("")
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    env.pop("RAYBAKE_BASE_IMAGE")
    (root / "pyproject.toml").write_text((root / "pyproject.toml").read_text()
                                         + f'\n[tool.raybake]\nbase_image = "{engine.base_image}"\n')
    refs = {line.rsplit(":", 1)[1].rsplit("-", 1)[0]: line
            for line in raybake("tag", "--all", "-C", str(root), env=env).stdout.split()}
    proc = raybake("build", "--all", "--keep-failed", "-C", str(root), env=env, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr  # 2: not every failure is a finding
    assert "Traceback" not in proc.stderr
    summary = proc.stdout.splitlines()
    assert [line.split()[:2] for line in summary] == [
        [refs["a-rejected"], "FAILED"], [refs["b-broken"], "FAILED"], [refs["c-good"], "built"]], proc.stdout
    assert "2 of 3 images failed" in proc.stderr
    # Each failure's own error (what and why), not only its name in the summary, before the summary.
    end = proc.stderr.index("2 of 3 images failed")
    assert -1 < proc.stderr.find("RAY_ENABLE_UV_RUN_RUNTIME_ENV") < end, proc.stderr
    assert -1 < proc.stderr.find("127.0.0.1:1/absent/base:1") < end, proc.stderr
    assert docker("image", "inspect", refs["c-good"], check=False).returncode == 0
    for name in ("a-rejected", "b-broken"):
        assert docker("image", "inspect", refs[name], check=False).returncode != 0
    # --keep-failed kept the rejected image under a name that is not a lock tag, and said so.
    kept = re.search(rf"kept for inspection as ({re.escape(unique_repo)}:rejected-a-rejected-[0-9a-f]{{12}})",
                     proc.stderr).group(1)
    assert docker("image", "inspect", kept, check=False).returncode == 0
    docker("image", "rm", kept)
    # Without --keep-failed the rejected image is removed as before; only findings: exit 1.
    (root / "images/b-broken.yaml").unlink()
    again = raybake("build", "--all", "-C", str(root), env=env, check=False)
    assert again.returncode == 1, again.stdout + again.stderr
    assert "1 of 2 images failed" in again.stderr and "kept for inspection" not in again.stderr
    tags = docker("image", "ls", "--format", "{{.Tag}}", unique_repo).stdout.split()
    assert not [t for t in tags if t.startswith("rejected-")], tags


@pytest.mark.parametrize("failure", ["verification", "interrupt"])
@pytest.mark.parametrize("holder", ["force", "other-repository"])
def test_a_failed_rebuild_never_removes_the_same_image_tagged_elsewhere(engine, copy_fixture, unique_repo,
                                                                        monkeypatch, failure, holder):
    """A rebuild of a verified image gives that very image (builds are reproducible): a failed
    verification or Ctrl-C must not remove it by ID, whether its one tag is this reference
    (rebuilt with --force) or another repository's."""
    import uuid

    from raybake.build import ensure_image
    from raybake.errors import VerificationFailed
    from raybake.planner import identities_for
    from raybake.progress import Reporter
    from raybake.project import load_project

    root = copy_fixture("small")
    with (root / "pyproject.toml").open("a") as f:  # this image is this test's alone
        f.write(f'\n[tool.raybake]\nenv = {{ RAYBAKE_TEST_RUN = "{uuid.uuid4().hex}" }}\n')
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ref = ref_of(raybake("build", "-C", str(root), env=env).stdout)
    kept = ref if holder == "force" else f"{unique_repo}-other:kept"
    try:
        verified = docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
        if holder == "other-repository":  # only another repository's tag names it
            docker("tag", ref, kept)
            docker("image", "rm", ref)
        built: list[str] = []

        def fail(project, recipe, image_id):
            built.append(image_id)
            if failure == "interrupt":
                raise KeyboardInterrupt
            raise VerificationFailed("rejected for this test", fix="none")

        project = load_project(root)
        (plan,) = identities_for(project, ())
        with pytest.raises(KeyboardInterrupt if failure == "interrupt" else VerificationFailed):
            ensure_image(project, plan, force=holder == "force", reporter=Reporter(), verify=fail)
        assert built == [verified]  # the rebuild gave the very image that is tagged
        assert docker("image", "inspect", "--format", "{{.Id}}", kept).stdout.strip() == verified
    finally:
        docker("image", "rm", kept, check=False)


def test_an_image_taken_over_and_removed_before_its_tag_is_built_again(engine, copy_fixture, unique_repo,
                                                                       monkeypatch):
    """An identical build elsewhere (another repository, another raybake) tags the untagged
    image just built, which takes it over, then removes its tag: the image is gone before
    this build tags it. The build gives it again, verifies and tags it."""
    import uuid

    from raybake.build import ensure_image
    from raybake.progress import Reporter

    root = copy_fixture("small")
    with (root / "pyproject.toml").open("a") as f:  # this image is this test's alone
        f.write(f'\n[tool.raybake]\nenv = {{ RAYBAKE_TEST_RUN = "{uuid.uuid4().hex}" }}\n')
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    verified: list[str] = []

    def taken_over_once(project, recipe, image_id):
        if not verified:
            docker("tag", image_id, f"{unique_repo}-elsewhere:same")
            docker("image", "rm", f"{unique_repo}-elsewhere:same")
            assert docker("image", "inspect", image_id, check=False).returncode != 0  # gone
        verified.append(image_id)

    project = load_project(root)
    (plan,) = identities_for(project, ())
    result = ensure_image(project, plan, reporter=Reporter(), verify=taken_over_once)
    assert result.status == "built" and verified == [result.image_id] * 2
    assert docker("image", "inspect", "--format", "{{.Id}}", plan.reference).stdout.strip() == result.image_id


# ---- RAYBAKE_BUILD_TIMEOUT ----

@pytest.mark.parametrize("stalls", ["base pull", "download"])
def test_a_stalled_build_is_stopped_at_raybake_build_timeout(engine, copy_fixture, unique_repo, stalls):
    """README: RAYBAKE_BUILD_TIMEOUT bounds one image build, the base image's pull
    included. What stalls is a server that accepts and never answers: a base in its
    registry, or the proxy every download of uv goes through."""
    from test_buildcache import stalled_registry
    from test_errors import assert_clean_error

    root = copy_fixture("small")
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo, RAYBAKE_BUILD_TIMEOUT="3")
    with stalled_registry() as stalled:
        if stalls == "base pull":
            env["RAYBAKE_BASE_IMAGE"] = f"{stalled}/raybake-test/base:1"
            needle = f"pulling {stalled}/raybake-test/base:1 did not finish within 3 s and was stopped"
        else:
            (root / "images").mkdir()
            (root / "images/default.yaml").write_text(
                f'env:\n  HTTPS_PROXY: "http://{stalled}"\n  HTTP_PROXY: "http://{stalled}"\n'
                '  UV_NO_CACHE: "1"\n')
            needle = "the image build did not finish within 3 s and was stopped"
        proc = raybake("build", "-C", str(root), env=env, check=False)
    assert_clean_error(proc, needle, "RAYBAKE_BUILD_TIMEOUT")
    reference = raybake("tag", "-C", str(root), env=env).stdout.strip()
    assert docker("image", "inspect", reference, check=False).returncode != 0
