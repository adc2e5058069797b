"""raybake stage: the trimmed, deterministic working_dir copy."""

from __future__ import annotations

import os
import re
import stat
import zipfile
from pathlib import Path

import pytest
from helpers import raybake

from raybake.errors import SpecError, StageError
from raybake.jobs import write_working_dir_zip
from raybake.project import load_project
from raybake.stage import MARKER, STAGED_MTIME, stage_project, stage_tree


def write(root: Path, rel: str, text: str = "x\n") -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def staged_names(out: Path) -> set[str]:
    """Every file actually present under ``out`` (the marker aside)."""
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {MARKER}


@pytest.fixture
def small(copy_fixture) -> Path:
    return copy_fixture("small")


def test_gitignore_applies_at_every_level_like_git(small, tmp_path):
    write(small, ".gitignore", "*.log\ndata/\n/top-only.txt\n")
    write(small, "app.log")
    write(small, "data/big.csv")
    write(small, "top-only.txt")
    write(small, "pkg/top-only.txt")  # anchored to the root: not this one
    write(small, "pkg/.gitignore", "local.txt\n!keep.log\n")
    write(small, "pkg/local.txt")
    write(small, "pkg/keep.log")  # the nested file negates the root's *.log
    write(small, "pkg/other.log")
    write(small, "other/local.txt")  # the nested file governs only its subtree
    staged = stage_tree(small, tmp_path / "out", members=[])
    names = staged_names(staged.path)
    assert {"pkg/top-only.txt", "pkg/keep.log", "other/local.txt", "src/small/__init__.py"} <= names
    assert not names & {"app.log", "data/big.csv", "top-only.txt", "pkg/local.txt", "pkg/other.log"}
    # Applied, so not shipped: Ray would apply them again to the staged copy.
    assert not names & {".gitignore", "pkg/.gitignore"}
    assert set(staged.files) == names


def test_rayignore_applies_like_gitignore_and_may_negate_it(small, tmp_path):
    write(small, ".gitignore", "notebooks/\n")
    write(small, ".rayignore", "*.ipynb\n!notebooks/\n")
    write(small, "analysis.ipynb")
    write(small, "notebooks/run.py")
    write(small, "sub/.rayignore", "fixtures/\n")
    write(small, "sub/fixtures/a.json")
    write(small, "fixtures/b.json")
    names = set(stage_tree(small, tmp_path / "out", members=[]).files)
    assert "notebooks/run.py" in names and "fixtures/b.json" in names
    assert not names & {"analysis.ipynb", "sub/fixtures/a.json", ".rayignore", "sub/.rayignore"}


def test_default_excludes_are_never_staged(small, tmp_path):
    for rel in (".git/HEAD", ".venv/bin/python", "venv/lib/x.py", "src/small/__pycache__/m.cpython-311.pyc",
                "src/small/old.pyc", "build/lib/small.py", "dist/small-0.1.whl", ".pytest_cache/v",
                ".mypy_cache/x", ".ruff_cache/x", ".hypothesis/x", ".tox/x", ".nox/x",
                "web/node_modules/x.js", "src/small.egg-info/PKG-INFO"):
        write(small, rel)
    write(small, "src/small/build/__init__.py")  # a package named build is code, not a build output
    names = set(stage_tree(small, tmp_path / "out", members=[]).files)
    assert names == {"pyproject.toml", "uv.lock", "src/small/__init__.py", "src/small/build/__init__.py"}


def test_workspace_members_build_outputs_are_excluded(copy_fixture, tmp_path):
    root = copy_fixture("workspace")
    write(root, "libs/liba/dist/liba-0.1.whl")
    write(root, "libs/liba/build/lib/liba.py")
    names = set(stage_project(load_project(root), tmp_path / "out").files)
    assert "libs/liba/src/liba/__init__.py" in names
    assert not any(n.startswith(("libs/liba/dist/", "libs/liba/build/")) for n in names)


SECRETS = (".env", ".env.production", "sub/.env", "id_rsa", "id_rsa.pub", "keys/id_ed25519", "tls/server.pem",
           "tls/server.key", "cert.p12", ".aws/credentials", ".netrc", ".pypirc", "credentials.json",
           "my-service-account-123.json", "tools/.docker/config.json", ".kube/config",
           # the hostile-input pass found these staged (issue 14.5)
           ".npmrc", ".pgpass", ".vault-token", ".envrc", ".gnupg/private-keys-v1.d/key.key",
           ".gnupg/pubring.kbx", "home/.config/gcloud/application_default_credentials.json",
           "application_default_credentials.json", ".azure/accessTokens.json", ".azure/msal_token_cache.json",
           "deploy/trainer-sa.json", "kubeconfig", "ops/credentials", "deploy/secrets.yaml",
           "deploy/secrets.yml", ".ssh/config", ".git-credentials", ".yarnrc.yml", ".my.cnf",
           "infra/terraform.tfstate", "infra/prod.tfvars", ".terraformrc", "client_secret_123.json",
           "ci/.circleci/cli.yml", "home/.config/gh/hosts.yml", ".cargo/credentials.toml",
           "clusters/prod.kubeconfig", ".s3cfg", ".databrickscfg", "home/.kaggle/kaggle.json",
           # Python's own credential files (issue 21.4)
           "pip.conf", ".pip/pip.conf", ".config/pip/pip.conf", "pip.ini", "uv.toml", ".config/uv/uv.toml",
           ".config/pypoetry/auth.toml", "rclone.conf", ".config/rclone/rclone.conf", ".mc/config.json",
           ".huggingface_token")


def test_secrets_are_never_staged_by_default(small, tmp_path):
    for rel in SECRETS:
        write(small, rel, "SECRET\n")
    staged = stage_tree(small, tmp_path / "out", members=[])
    assert not set(SECRETS) & set(staged.files)
    assert not set(SECRETS) & staged_names(staged.path)


def test_include_stages_secrets_only_when_it_names_them(small, tmp_path):
    for rel in SECRETS:
        write(small, rel, "SECRET\n")
    write(small, ".gitignore", "config/local.toml\n")
    write(small, "config/local.toml")
    # Wildcards stage ordinary excluded files, never a secret: `*.json` and
    # `id_*` stay out; `.env`, `id_rsa` and `.aws/credentials` are named.
    include = [".env", "id_rsa", ".aws/credentials", "*.json", "id_*", "config/*.toml"]
    names = set(stage_tree(small, tmp_path / "out", include=include, members=[]).files)
    assert {".env", "sub/.env", "id_rsa", ".aws/credentials", "config/local.toml"} <= names
    assert not names & {"credentials.json", "my-service-account-123.json", "id_rsa.pub",
                        "keys/id_ed25519", ".env.production", "tools/.docker/config.json"}


def test_include_enters_an_excluded_directory_only_for_what_it_names(small, tmp_path):
    write(small, ".gitignore", "data/\n")
    write(small, "data/keep/model.bin")
    write(small, "data/raw/huge.bin")
    write(small, ".venv/.env")  # an unanchored include never sends the walk into .venv
    names = set(stage_tree(small, tmp_path / "out", include=["data/keep/", ".env"], members=[]).files)
    assert "data/keep/model.bin" in names
    assert not names & {"data/raw/huge.bin", ".venv/.env"}


def test_tool_raybake_exclude_include_and_cap(small, tmp_path):
    with (small / "pyproject.toml").open("a") as f:
        f.write('\n[tool.raybake]\nstage_exclude = ["docs/"]\nstage_include = [".env"]\nstage_max_mb = 1\n')
    write(small, "docs/index.md")
    write(small, ".env", "TOKEN=1\n")
    names = set(stage_project(load_project(small), tmp_path / "out").files)
    assert ".env" in names and "docs/index.md" not in names
    (small / "big.bin").write_bytes(b"\0" * (2 * 2**20))
    with pytest.raises(StageError, match="big.bin"):
        stage_project(load_project(small), tmp_path / "out2")


def test_stage_max_mb_must_be_a_whole_number(small, tmp_path):
    with (small / "pyproject.toml").open("a") as f:
        f.write('\n[tool.raybake]\nstage_max_mb = "lots"\n')
    with pytest.raises(SpecError, match="'stage_max_mb' must be a whole number"):
        stage_project(load_project(small), tmp_path / "out")


def test_symlink_inside_the_tree_is_staged_as_its_content(small, tmp_path):
    write(small, "shared/util.py", "X = 1\n")
    (small / "util_link.py").symlink_to("shared/util.py")
    (small / "src" / "shared").symlink_to("../shared", target_is_directory=True)
    staged = stage_tree(small, tmp_path / "out", members=[])
    assert {"util_link.py", "src/shared/util.py", "shared/util.py"} <= set(staged.files)
    for rel in ("util_link.py", "src/shared", "src/shared/util.py"):
        assert not (staged.path / rel).is_symlink(), rel
    assert (staged.path / "src/shared/util.py").read_text() == "X = 1\n"


def test_symlink_leaving_the_tree_is_refused_naming_link_and_target(small, tmp_path):
    outside = write(tmp_path, "elsewhere/data.csv")
    (small / "data.csv").symlink_to(outside)
    out = tmp_path / "out"
    with pytest.raises(StageError) as info:
        stage_tree(small, out, members=[])
    assert "data.csv" in info.value.message and str(outside) in info.value.message
    assert ".rayignore" in info.value.fix and "stage_exclude" in info.value.fix
    assert not out.exists()
    # Excluded, the link is fine.
    write(small, ".rayignore", "/data.csv\n")
    assert "data.csv" not in stage_tree(small, out, members=[]).files


def test_symlink_to_an_excluded_file_is_not_staged(small, tmp_path):
    write(small, ".env", "TOKEN=1\n")
    (small / "settings.cfg").symlink_to(".env")
    assert "settings.cfg" not in stage_tree(small, tmp_path / "out", members=[]).files


def test_symlink_loop_is_refused(small, tmp_path):
    (small / "src" / "small" / "again").symlink_to("..", target_is_directory=True)
    with pytest.raises(StageError, match=r"src/small/again .*never end"):
        stage_tree(small, tmp_path / "out", members=[])


def test_staging_is_deterministic(small, tmp_path):
    write(small, "run.sh", "#!/bin/sh\n").chmod(0o775)
    write(small, "conf/a.yaml").chmod(0o600)
    one = stage_tree(small, tmp_path / "one", members=[])
    os.utime(small / "conf" / "a.yaml", (1_700_000_000, 1_700_000_000))  # mtimes do not matter
    two = stage_tree(small, tmp_path / "two", members=[])
    assert one.content_hash == two.content_hash and re.fullmatch(r"[0-9a-f]{64}", one.content_hash)
    assert one.files == two.files == tuple(sorted(one.files))
    assert one.total_bytes == two.total_bytes == sum((small / f).stat().st_size for f in one.files)

    def meta(out: Path) -> dict[str, tuple[int, int]]:
        return {p.relative_to(out).as_posix(): (int(p.stat().st_mtime), stat.S_IMODE(p.stat().st_mode))
                for p in sorted(out.rglob("*"))}

    assert meta(one.path) == meta(two.path)
    assert meta(one.path)["run.sh"] == (STAGED_MTIME, 0o755)
    assert meta(one.path)["conf/a.yaml"] == (STAGED_MTIME, 0o600)  # private stays private
    assert meta(one.path)["conf"] == (STAGED_MTIME, 0o755)


def test_content_hash_follows_content_paths_and_executable_bit(small, tmp_path):
    base = stage_tree(small, tmp_path / "a", members=[]).content_hash
    (small / "uv.lock").chmod(0o755)
    executable = stage_tree(small, tmp_path / "b", members=[]).content_hash
    (small / "uv.lock").chmod(0o644)
    (small / "src/small/__init__.py").write_text("changed\n")
    edited = stage_tree(small, tmp_path / "c", members=[]).content_hash
    assert len({base, executable, edited}) == 3


def test_over_the_cap_lists_the_largest_and_creates_nothing(small, tmp_path):
    sizes = {"data/weights.bin": 600_000, "data/more.bin": 300_000, "models/m.bin": 200_000,
             "blob.bin": 150_000, "src/small/table.py": 50_000, "notes/a.txt": 10_000, "misc/b.txt": 5_000}
    for rel, size in sizes.items():
        p = small / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"\1" * size)
    out = tmp_path / "stage" / "out"
    with pytest.raises(StageError) as info:
        stage_tree(small, out, max_bytes=1_000_000, members=[])
    message = info.value.message
    files = re.findall(r"^\s+\S+ \S+\s+(\S+)$", message.split("largest top-level")[0], re.M)
    assert files == ["data/weights.bin", "data/more.bin", "models/m.bin", "blob.bin", "src/small/table.py"]
    dirs = re.findall(r"^\s+\S+ \S+\s+(\S+)$", message.split("largest top-level directories:")[1], re.M)
    assert dirs == ["data/", "models/", "src/", "notes/", "misc/"]
    assert "585.9 KiB" in message  # human sizes
    assert ".rayignore" in info.value.fix and "stage_exclude" in info.value.fix and "stage_max_mb" in info.value.fix
    assert not out.parent.exists()  # checked before anything is written


def test_over_the_cap_a_huge_file_is_named_not_its_directory(small, tmp_path):
    """A 2 GiB file beside the code: leaving out that file is the fix, not `src/`."""
    huge = small / "src" / "small" / "checkpoint.pt"
    with huge.open("wb") as f:
        f.truncate(2 * 2**30)  # sparse: the walk only stats it
    with pytest.raises(StageError) as info:
        stage_tree(small, tmp_path / "out", members=[])
    assert "'src/small/checkpoint.pt'" in info.value.fix and "'src/'" not in info.value.fix


def test_existing_staged_dir_is_replaced_atomically(small, tmp_path):
    out = tmp_path / "out"
    stage_tree(small, out, members=[])
    write(out, "stale.txt")
    write(small, "new.py")
    stage_tree(small, out, members=[])
    assert "new.py" in staged_names(out) and "stale.txt" not in staged_names(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "small"]  # no temporary left


def test_a_directory_raybake_did_not_stage_is_never_replaced(small, tmp_path):
    out = write(tmp_path, "mine/notes.txt").parent
    with pytest.raises(StageError, match="not a directory raybake staged"):
        stage_tree(small, out, members=[])
    assert (out / "notes.txt").exists()
    with pytest.raises(StageError, match="holds the project itself"):
        stage_tree(small, small.parent, members=[])
    assert (small / "pyproject.toml").exists()


def test_interrupted_staging_leaves_the_previous_tree_and_no_temporary(small, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = stage_tree(small, out, members=[])
    write(small, "new.py")
    calls = []

    def interrupt(*args, **kwargs):
        calls.append(args)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "utime", interrupt)
    with pytest.raises(KeyboardInterrupt):
        stage_tree(small, out, members=[])
    monkeypatch.undo()
    assert calls  # the copy had started
    assert staged_names(out) == set(first.files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "small"]


def test_failed_swap_puts_the_previous_tree_back(small, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = stage_tree(small, out, members=[])
    write(small, "new.py")
    rename = os.rename

    def failing_rename(src, dst):
        if Path(src).name.startswith(".raybake-tmp-"):
            raise OSError(28, "No space left on device")
        rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(StageError, match="No space left on device"):
        stage_tree(small, out, members=[])
    monkeypatch.undo()
    assert staged_names(out) == set(first.files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "small"]


def test_out_inside_the_project_is_not_staged_into_itself(small):
    first = stage_tree(small, small / "staged", members=[])
    second = stage_tree(small, small / "staged", members=[])
    assert first.files == second.files and not any(f.startswith("staged/") for f in second.files)


def test_python_path_names_src_and_each_members_src(copy_fixture, tmp_path):
    root = copy_fixture("workspace")
    staged = stage_project(load_project(root), tmp_path / "ws")
    assert staged.python_path == ("src", "libs/liba/src", "libs/libb/src")
    assert (staged.path / "libs/libb/src/libb/__init__.py").is_file()
    assert stage_tree(copy_fixture("small"), tmp_path / "small-out").python_path == ("src",)


def test_cli_stages_and_prints_dir_count_size_and_hash(small, tmp_path):
    write(small, ".env", "TOKEN=do-not-ship\n")
    out = tmp_path / "cli-out"
    proc = raybake("stage", "-C", str(small), "--out", str(out))
    expected = stage_tree(small, tmp_path / "lib-out", members=[])
    lines = proc.stdout.splitlines()
    assert lines[0] == str(out)
    assert lines[1].startswith(f"{len(expected.files)} files, ")
    assert lines[1].endswith(expected.content_hash)
    assert ".env" not in staged_names(out)


def test_cli_over_the_cap_is_an_error_with_a_fix(small, tmp_path):
    with (small / "pyproject.toml").open("a") as f:
        f.write("\n[tool.raybake]\nstage_max_mb = 1\n")
    (small / "data").mkdir()
    (small / "data" / "weights.bin").write_bytes(os.urandom(2 * 2**20))
    proc = raybake("stage", "-C", str(small), "--out", str(tmp_path / "out"), check=False)
    assert proc.returncode == 2
    assert "data/weights.bin" in proc.stderr and ".rayignore" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


PRIVATE_KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
               "-----END OPENSSH PRIVATE KEY-----\n")
SERVICE_ACCOUNT = ('{\n  "type": "service_account",\n  "project_id": "p",\n  "private_key_id": "0",\n'
                   '  "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIE\\n'
                   '-----END PRIVATE KEY-----\\n"\n}\n')


def test_credentials_are_recognised_by_content_too(small, tmp_path):
    write(small, "config/deploy.txt", "# ops notes\n" + PRIVATE_KEY)
    write(small, "data/gcp.json", SERVICE_ACCOUNT)
    write(small, "data/user.json", '{"type": "authorized_user", "refresh_token": "1//0g"}\n')
    write(small, "data/rsa.bin", "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n")
    write(small, "data/not-a-key.json", '{"type": "service_account", "client_email": "a@b"}\n')
    write(small, "tests/fixture_key.txt", PRIVATE_KEY)
    staged = stage_tree(small, tmp_path / "out", include=["tests/fixture_key.txt"], members=[])
    assert set(staged.withheld) == {"config/deploy.txt", "data/gcp.json", "data/user.json", "data/rsa.bin"}
    names = staged_names(staged.path)
    assert not names & set(staged.withheld) and set(staged.files) == names
    # A service-account JSON without its key is data; a file named exactly ships.
    assert {"data/not-a-key.json", "tests/fixture_key.txt"} <= names

    proc = raybake("stage", "-C", str(small), "--out", str(tmp_path / "cli"))
    assert "data/gcp.json" in proc.stderr and "stage_include" in proc.stderr


# Credentials under names no list can hold (issue 21.4); and code and templates
# that only mention them, which ship.
CREDENTIAL_CONTENT = {
    "config/aws.ini": "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
                      "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
    "deploy/env.sh": "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
    "settings/indexes.cfg": "[global]\nindex-url = https://deploy:s3cr3t-t0ken@pypi.corp.example/simple\n",
    "notes/requirements-private.txt": "--extra-index-url https://__token__:pypi-AgEIcHlwaS5vcmc@upload.example\n",
    "ci/pyproject-fragment.toml": '[[tool.uv.index]]\nurl = "git+https://bot:ghp_abc123@github.com/org/x"\n',
}
NOT_CREDENTIALS = {
    "src/app/s3.py": "import boto3\nclient = boto3.client('s3', aws_secret_access_key=secret)\n"
                     "aws_secret_access_key = os.environ['AWS_SECRET_ACCESS_KEY']\n",
    "src/app/urls.py": 'URL = f"https://{user}:{token}@pypi.corp.example/simple"\n',
    "ci/template.cfg": "index-url = https://${USER}:${TOKEN}@pypi.corp.example/simple\n",
    "docs/mail.md": "Write to ops@example.com or see https://example.com/a:b\n",
}


def test_python_credentials_are_recognised_by_content(small, tmp_path):
    for rel, text in {**CREDENTIAL_CONTENT, **NOT_CREDENTIALS}.items():
        write(small, rel, text)
    staged = stage_tree(small, tmp_path / "out", members=[])
    assert set(staged.withheld) == set(CREDENTIAL_CONTENT)
    assert set(NOT_CREDENTIALS) <= staged_names(staged.path)
    assert not staged_names(staged.path) & set(CREDENTIAL_CONTENT)
    # The zip a cluster fetches (and any upload of it) is the staged tree: none there either.
    with zipfile.ZipFile(write_working_dir_zip(staged, tmp_path / "wd.zip")) as archive:
        zipped = {name.partition("/")[2] for name in archive.namelist()}
    assert set(NOT_CREDENTIALS) <= zipped and not zipped & set(CREDENTIAL_CONTENT)


@pytest.mark.parametrize("include", [["*"], [".git/"], [".git"], [".git/config"], ["**/.git/**"]])
def test_git_never_ships_whatever_stage_include_says(small, tmp_path, include):
    write(small, ".git/config", '[remote "origin"]\n\turl = https://x-access-token:ghs_123@github.com/o/r\n')
    write(small, ".git/HEAD", "ref: refs/heads/main\n")
    write(small, "vendor/lib/.git", "gitdir: ../../.git/modules/lib\n")  # a submodule's .git file
    write(small, "vendor/lib/lib.py")
    write(small, ".gitmodules", "")
    names = set(stage_tree(small, tmp_path / "out", include=include, members=[]).files)
    assert not any(n == ".git" or n.startswith(".git/") or n.endswith("/.git") for n in names)
    assert "vendor/lib/lib.py" in names


def test_a_file_swapped_for_a_symlink_after_the_walk_is_not_followed(small, tmp_path, monkeypatch):
    import raybake.stage as stage

    outside = write(tmp_path, "home/.ssh/id_ed25519", "THE-KEY\n")
    data = write(small, "src/small/data.txt", "harmless\n")
    check_size = stage._check_size

    def swap(files, max_bytes):  # runs after the walk, before the copy
        check_size(files, max_bytes)
        data.unlink()
        data.symlink_to(outside)

    monkeypatch.setattr(stage, "_check_size", swap)
    out = tmp_path / "out"
    with pytest.raises(StageError, match=r"src/small/data.txt was replaced by a symlink"):
        stage_tree(small, out, members=[])
    assert not out.exists() and not list(tmp_path.glob(".raybake-tmp-*"))


def test_a_directory_swapped_for_a_symlink_after_the_walk_is_not_followed(small, tmp_path, monkeypatch):
    import raybake.stage as stage

    write(tmp_path, "home/.ssh/__init__.py", "THE-KEY\n")
    check_size = stage._check_size

    def swap(files, max_bytes):
        check_size(files, max_bytes)
        (small / "src" / "small").rename(small / "moved")
        (small / "src" / "small").symlink_to(tmp_path / "home" / ".ssh", target_is_directory=True)

    monkeypatch.setattr(stage, "_check_size", swap)
    with pytest.raises(StageError, match=r"src/small/__init__.py was replaced by a symlink"):
        stage_tree(small, tmp_path / "out", members=[])
    assert not (tmp_path / "out").exists()


def test_private_files_keep_owner_only_modes(small, tmp_path):
    write(small, "conf/token.cfg").chmod(0o600)
    write(small, "bin/secret-run.sh", "#!/bin/sh\n").chmod(0o700)
    write(small, "conf/shared.cfg").chmod(0o640)  # the group may read it: not private
    write(small, "conf/public.cfg").chmod(0o604)
    before = stage_tree(small, tmp_path / "a", members=[])
    modes = {rel: stat.S_IMODE((before.path / rel).stat().st_mode) for rel in before.files}
    assert modes["conf/token.cfg"] == 0o600 and modes["bin/secret-run.sh"] == 0o700
    assert modes["conf/shared.cfg"] == modes["conf/public.cfg"] == 0o644
    assert modes["uv.lock"] == 0o644
    (small / "conf/token.cfg").chmod(0o644)  # the mode ships, so it is in the content hash
    assert stage_tree(small, tmp_path / "b", members=[]).content_hash != before.content_hash


# The README's list of credential files ("Staging the source"), one example of
# each: a name dropped from the rules fails its own case here.
README_CREDENTIAL_NAMES = {
    ".env*": ".env.production", ".envrc": ".envrc", "*.pem": "certs/tls.pem", "*.key": "certs/tls.key",
    "id_rsa*": "keys/id_rsa.bak", "id_ed25519*": "keys/id_ed25519", "*.p12": "certs/client.p12",
    "*.jks": "certs/store.jks", "*.ppk": "keys/deploy.ppk", ".ssh/": "home/.ssh/config",
    ".gnupg/": "home/.gnupg/pubring.kbx", ".netrc": ".netrc", ".npmrc": "web/.npmrc",
    ".yarnrc.yml": "web/.yarnrc.yml", ".pypirc": ".pypirc", ".git-credentials": ".git-credentials",
    ".docker/config.json": "home/.docker/config.json", "pip.conf": ".config/pip/pip.conf",
    "pip.ini": "pip.ini", "uv.toml": ".config/uv/uv.toml", "auth.toml": ".config/pypoetry/auth.toml",
    "rclone.conf": "rclone.conf", ".mc/config.json": "home/.mc/config.json",
    ".cargo/credentials": "home/.cargo/credentials", ".m2/settings.xml": "home/.m2/settings.xml",
    ".gradle/gradle.properties": "home/.gradle/gradle.properties", ".pgpass": ".pgpass", ".my.cnf": ".my.cnf",
    ".aws/": "home/.aws/credentials", ".azure/": "home/.azure/msal_token_cache.json",
    ".config/gcloud/": "home/.config/gcloud/credentials.db",
    "application_default_credentials.json": "application_default_credentials.json", ".boto": "home/.boto",
    ".s3cfg": ".s3cfg", ".databrickscfg": ".databrickscfg", "kaggle.json": "home/.kaggle/kaggle.json",
    "Hugging Face tokens": "home/.cache/huggingface/token", ".huggingface_token": ".huggingface_token",
    ".kube/": "home/.kube/config", "kubeconfig": "deploy/kubeconfig", "*.kubeconfig": "deploy/prod.kubeconfig",
    ".vault-token": ".vault-token", ".terraformrc": ".terraformrc", "*.tfstate": "infra/terraform.tfstate",
    "*.tfvars": "infra/prod.tfvars", ".terraform/": "infra/.terraform/providers.lock",
    "credentials": "credentials", "credentials.json": "config/credentials.json",
    "client_secret*.json": "client_secret_123.json", "token.json": "auth/token.json",
    "*service-account*.json": "gcp-service-account-prod.json", "*-sa.json": "deployer-sa.json",
    "secrets.yaml": "deploy/secrets.yaml",
}
README_CREDENTIAL_CONTENT = {
    "PEM": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
    "OpenSSH": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n",
    "PGP": "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF\n",
    "PuTTY": "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: deploy\n",
}


@pytest.mark.parametrize("pattern", README_CREDENTIAL_NAMES, ids=list(README_CREDENTIAL_NAMES))
def test_every_credential_name_the_readme_lists_stays_out(small, tmp_path, pattern):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert f"`{pattern}`" in readme or pattern in readme  # the README still promises it
    rel = README_CREDENTIAL_NAMES[pattern]
    write(small, rel, "harmless words\n")  # by name alone: no key-like content
    staged = stage_tree(small, tmp_path / "out", members=[])
    assert rel not in staged.files and rel not in staged_names(staged.path)


@pytest.mark.parametrize("kind", README_CREDENTIAL_CONTENT)
def test_every_private_key_format_the_readme_lists_stays_out_by_content(small, tmp_path, kind):
    write(small, "notes/innocent-name.txt", "# notes\n" + README_CREDENTIAL_CONTENT[kind])
    staged = stage_tree(small, tmp_path / "out", members=[])
    assert "notes/innocent-name.txt" in staged.withheld
    assert "notes/innocent-name.txt" not in staged_names(staged.path)
