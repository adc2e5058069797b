"""Staging the project's source for Ray's runtime_env ``working_dir``.

Ray uploads whatever directory it is given. Rather than let it zip the
checkout (virtualenvs, caches, build outputs, a stray ``.env``), raybake
copies a trimmed tree into a directory of its own and hands Ray that:

- the project's ``.gitignore`` and ``.rayignore`` files apply at every level,
  like git (a nested file governs its subtree, the deeper one wins); then the
  default excludes, secret-looking files and ``[tool.raybake] stage_exclude``;
- ``stage_include`` patterns stage what they match even when excluded, except
  that a secret-looking file needs a pattern without wildcards (``.env``,
  ``keys/deploy.pem``, ``.aws/``): a broad ``*.json`` cannot pull one in;
  ``.git`` never ships, whatever the patterns say;
- secrets are recognised by name (SECRET_EXCLUDES) and by content: a private
  key or a cloud service-account key in the first bytes of any file keeps it
  out, unless stage_include names it exactly;
- files are read without following symlinks (each path component opened with
  O_NOFOLLOW), so one swapped for a link after the walk is never followed;
- the size cap is checked after a walk that only stats, before anything is
  written; the copy goes to a temporary sibling renamed into place;
- staged files get a fixed mtime and normalised permissions (0644/0755, or
  0600/0700 for a file only its owner may read), so the same source gives the
  same bytes, the same ``content_hash`` and Ray's package hash (over paths and
  contents) stays put.

Pure file walking: no git, no subprocess.
"""

from __future__ import annotations

import enum
import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pathspec import GitIgnoreSpec

from raybake.errors import StageError
from raybake.lockfile import parse_lock
from raybake.plan import selected_local_packages
from raybake.progress import format_size
from raybake.project import Project, load_project
from raybake.spec import ImageSpec, StageConfig, stage_config

# Never useful on a worker. build/ and dist/ are anchored (to the root here,
# to each workspace member at stage time): a package named `build` deeper in
# the source is code, not a build output.
DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".git", ".venv", "venv/", "__pycache__/", "*.pyc", "/build/", "/dist/",
    ".pytest_cache/", ".mypy_cache/", ".ruff_cache/", ".hypothesis/", ".tox/", ".nox/",
    "node_modules/", "*.egg-info",
)
# Credentials never leave the machine unless stage_include names them.
# `**/` keeps the two-component patterns unanchored, like the others.
SECRET_EXCLUDES: tuple[str, ...] = (
    # environment files
    ".env", ".env.*", ".envrc",
    # private keys, keystores, SSH and GPG
    "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "*.ppk",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", ".ssh/", ".gnupg/", ".password-store/",
    # package managers, registries, git hosts
    ".netrc", "_netrc", ".npmrc", ".yarnrc", ".yarnrc.yml", ".pypirc", ".git-credentials",
    "**/.docker/config.json", ".dockercfg", "**/.cargo/credentials", "**/.cargo/credentials.toml",
    "**/.m2/settings.xml", "**/.m2/settings-security.xml", "**/.gradle/gradle.properties",
    "**/.composer/auth.json", "**/.config/gh/hosts.yml", "**/.circleci/cli.yml", ".htpasswd",
    # Python's: pip's and uv's configuration (index URLs with credentials), Poetry's auth.toml
    "pip.conf", "pip.ini", "uv.toml", "auth.toml",
    # databases
    ".pgpass", ".my.cnf",
    # clouds and ML platforms
    ".aws/", ".azure/", "**/.config/gcloud/", "application_default_credentials.json",
    ".boto", ".s3cfg", ".databrickscfg", "**/.kaggle/kaggle.json", "**/huggingface/token",
    "**/.huggingface/token", ".huggingface_token", "rclone.conf", "**/.mc/config.json",
    # Kubernetes
    ".kube/", "kubeconfig", "kubeconfig.*", "*.kubeconfig",
    # Vault, Terraform
    ".vault-token", ".terraformrc", "terraform.rc", "credentials.tfrc.json", ".terraform/",
    "*.tfstate", "*.tfstate.*", "*.tfvars", "*.tfvars.json",
    # generic credential and secret files
    "credentials", "credentials.json", "credentials.yaml", "credentials.yml", "credentials.toml",
    "credentials.db", "client_secret*.json", "token.json", "*service-account*.json",
    "*service_account*.json", "*-sa.json", "secrets.yaml", "secrets.yml", "secrets.json",
    "secrets.toml", ".secrets",
)
# By content, in the first SNIFF_BYTES of every file: PEM/OpenSSH/PGP/PuTTY
# private keys, Google service-account or authorized-user JSON keys, an AWS
# secret key assigned on a line of its own (credentials files, .env-style
# files under any name; code passing aws_secret_access_key=... is not), and an
# http(s) URL with a literal password (an index URL in a config file under any
# name; a template such as https://{user}:${TOKEN}@ is not).
SNIFF_BYTES = 64 * 1024
_PRIVATE_KEY = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|PuTTY-User-Key-File-\d+:")
_AWS_SECRET = re.compile(rb"(?im)^[ \t]*(?:export[ \t]+)?aws_secret_access_key[ \t]*[=:][ \t]*[\"']?[A-Za-z0-9/+]{20,}")
_URL_PASSWORD = re.compile(rb"(?i)\b(?:git\+)?https?://[^\s/?#@:'\"]+:[^\s/?#@'\"{}$<>]+@[a-z0-9.-]")
_KEY_JSON = (
    (re.compile(rb'"type"\s*:\s*"service_account"'), re.compile(rb'"private_key"\s*:')),
    (re.compile(rb'"type"\s*:\s*"authorized_user"'), re.compile(rb'"refresh_token"\s*:')),
)
# Never staged, whatever stage_include says: its config may hold a token, and
# a worker has no use for the history.
NEVER_STAGED = ".git"
# Read in this order, so .rayignore may negate .gitignore. They are applied
# here and left out of the copy: Ray would apply them again to the staged tree
# and drop what stage_include forced in.
IGNORE_FILES = (".gitignore", ".rayignore")

# Marks a directory as raybake's own staging output: only such a directory (or
# an empty one) is ever replaced, and the walk never copies one into another.
MARKER = ".raybake-stage"
_MARKER_TEXT = b"staged by raybake for Ray's working_dir; replaced on the next `raybake stage`\n"
# 1980-01-01 UTC, the earliest time a zip entry holds: Ray zips working_dir.
STAGED_MTIME = 315532800
_GLOB_CHARS = frozenset("*?[\\")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class StagedTree:
    path: Path  # the staged directory, absolute
    files: tuple[str, ...]  # POSIX paths relative to ``path``, sorted
    total_bytes: int
    content_hash: str  # sha256 hex over sorted (path, mode class, file digest)
    python_path: tuple[str, ...] = ()  # relative dirs for PYTHONPATH: src, <member>/src
    withheld: tuple[str, ...] = ()  # left out because their content is a credential


@dataclass(frozen=True)
class _File:
    rel: str  # where it goes in the staged tree
    source: str  # where to read it: relative to the project's real root, no symlink on the way
    size: int
    named: bool = False  # stage_include names it exactly: shipped whatever its content


def looks_like_credentials(prefix: bytes) -> bool:
    """Whether the first bytes of a file hold a private key, a cloud key or a password in a URL."""
    return bool(_PRIVATE_KEY.search(prefix) or _AWS_SECRET.search(prefix) or _URL_PASSWORD.search(prefix)) or any(
        kind.search(prefix) and secret.search(prefix) for kind, secret in _KEY_JSON)


class _Verdict(enum.Enum):
    STAGE = "stage"    # a file to copy, or a directory to walk
    FORCED = "forced"  # an excluded directory entered only for stage_include patterns below it
    SKIP = "skip"


_Layers = tuple[tuple[str, GitIgnoreSpec], ...]  # (directory prefix "a/b/" or "", its rules), root first


def stage_project(project: Project, out: Path, spec: ImageSpec | None = None) -> StagedTree:
    """Stage ``project`` into ``out`` with the settings of ``[tool.raybake]``;
    its PYTHONPATH holds the import roots of the local packages ``spec``
    selects (of every one without a spec)."""
    config = stage_config(project)
    selected = (None if spec is None else
                selected_local_packages(project, spec, parse_lock(project.lock_bytes, str(project.root / "uv.lock"))))
    return stage_tree(project.root, out, include=config.include, exclude=config.exclude,
                      max_bytes=config.max_mb * 2**20, members=[m.path for m in project.members],
                      roots=project.python_roots(selected))


def stage_tree(project_root: Path, out: Path, *, include: Sequence[str] = (),
               exclude: Sequence[str] = (), max_bytes: int = StageConfig.max_mb * 2**20,
               members: Sequence[str] | None = None, roots: Sequence[str] | None = None) -> StagedTree:
    """Copy the files of ``project_root`` that a worker needs into ``out``.

    ``members`` are the workspace members' relative paths (default: read from
    the project). Raises StageError, leaving ``out`` as it was, when the tree
    is over ``max_bytes``, holds a symlink leaving it, or ``out`` is not
    raybake's to replace."""
    root = os.path.realpath(project_root)
    out = Path(os.path.abspath(out))
    if members is None or roots is None:
        project = load_project(Path(root))
        members = [m.path for m in project.members] if members is None else members
        roots = project.python_roots() if roots is None else roots
    _check_out(out, root)
    rules = _Rules(root, include=include, exclude=exclude, members=members)
    files = sorted(rules.walk(), key=lambda f: f.rel)
    _check_size(files, max_bytes)
    return _publish(root, files, out, roots)


def _check_out(out: Path, root: str) -> None:
    real = os.path.realpath(out)
    if real == root or root.startswith(real.rstrip(os.sep) + os.sep):
        raise StageError(f"cannot stage into {out}: it holds the project itself",
                         fix="choose an --out directory that is neither the project nor one of its parents")
    if out.is_symlink() or (out.exists() and not _replaceable(out)):
        raise StageError(f"{out} exists and is not a directory raybake staged; refusing to replace it",
                         fix="choose another --out directory, or remove that one")


def _replaceable(path: Path) -> bool:
    """An empty directory, or one raybake staged before."""
    if not path.is_dir():
        return False
    if (path / MARKER).is_file():
        return True
    with os.scandir(path) as entries:
        return next(entries, None) is None


def _has_glob(pattern: str) -> bool:
    return any(c in _GLOB_CHARS for c in pattern.removeprefix("!"))


def _spec(lines: Iterable[str], where: str) -> GitIgnoreSpec:
    try:
        return GitIgnoreSpec.from_lines(list(lines))
    except ValueError as exc:  # pathspec's GitWildMatchPatternError
        raise StageError(f"{where}: invalid pattern: {exc}",
                         fix="correct or remove the pattern (gitignore syntax)") from exc


class _Rules:
    """Which paths of the tree are staged, and the walk that applies it."""

    def __init__(self, root: str, *, include: Sequence[str], exclude: Sequence[str],
                 members: Sequence[str]) -> None:
        self.root = root
        member_outputs = [f"/{m}/{d}/" for m in members for d in ("build", "dist")]
        self._excluded = _spec([*DEFAULT_EXCLUDES, *member_outputs, *IGNORE_FILES, *exclude],
                               "stage_exclude")
        self._secret = GitIgnoreSpec.from_lines(SECRET_EXCLUDES)
        self._include = _spec(include, "stage_include")
        self._include_named = _spec([p for p in include if not _has_glob(p)], "stage_include")
        self._include_dirs = _include_prefixes(include)
        self._own_layer: dict[str, _Layers] = {}

    # -- the verdict on one path -------------------------------------------

    def verdict(self, rel: str, is_dir: bool, forced: bool, layers: _Layers) -> _Verdict:
        """``forced``: an ancestor is excluded and was entered only for stage_include."""
        if rel.rpartition("/")[2] == NEVER_STAGED:  # a directory, or a worktree's file
            return _Verdict.SKIP
        name = rel + "/" if is_dir else rel  # gitignore's `dir/` patterns need the slash
        secret = self._secret.match_file(name)
        if not (forced or secret or self._excluded.match_file(name) or _ignored(rel, is_dir, layers)):
            return _Verdict.STAGE
        if (self._include_named if secret else self._include).match_file(name):
            return _Verdict.STAGE
        if is_dir and self._may_include_below(rel):
            return _Verdict.FORCED
        return _Verdict.SKIP

    def _may_include_below(self, rel: str) -> bool:
        # Only anchored patterns whose literal prefix runs through ``rel``
        # enter an excluded directory: `.env` must not send the walk into .venv.
        parts = tuple(rel.split("/"))
        return any(static[:len(parts)] == parts or (globbed and static and parts[:len(static)] == static)
                   for static, globbed in self._include_dirs)

    def layers_of(self, rel_dir: str, parent: _Layers) -> _Layers:
        """``parent`` plus the rules of the ignore files in ``rel_dir``."""
        if rel_dir not in self._own_layer:
            prefix = rel_dir + "/" if rel_dir else ""
            lines: list[str] = []
            where = []
            for name in IGNORE_FILES:
                path = os.path.join(self.root, rel_dir, name)
                if os.path.isfile(path):
                    try:
                        with open(path, encoding="utf-8", errors="replace") as f:
                            lines.extend(f.read().splitlines())
                    except OSError as exc:
                        raise StageError(f"cannot read {prefix}{name}: {exc.strerror}",
                                         fix="make it readable: its rules decide what is staged") from exc
                    where.append(prefix + name)
            self._own_layer[rel_dir] = ((prefix, _spec(lines, " and ".join(where))),) if lines else ()
        return parent + self._own_layer[rel_dir]

    def path_verdict(self, rel: str, is_dir: bool) -> _Verdict:
        """The verdict on any path of the tree, its ancestors' rules included."""
        parts = rel.split("/")
        layers, forced = self.layers_of("", ()), False
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            v = self.verdict(d, True, forced, layers)
            if v is _Verdict.SKIP:
                return v
            forced = forced or v is _Verdict.FORCED
            layers = self.layers_of(d, layers)
        return self.verdict(rel, is_dir, forced, layers)

    # -- the walk -------------------------------------------------------------

    def walk(self) -> list[_File]:
        found: list[_File] = []
        self._walk(self.root, "", (self.root,), False, (), found)
        return found

    def _walk(self, path: str, rel_dir: str, real_chain: tuple[str, ...], forced: bool,
              layers: _Layers, found: list[_File]) -> None:
        # real_chain: the real paths of the directories being walked, to catch
        # a symlink back into one of them before it recurses forever.
        if not forced:  # inside a forced directory only stage_include counts
            layers = self.layers_of(rel_dir, layers)
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as exc:
            raise StageError(f"cannot read {path}: {exc.strerror}",
                             fix="make it readable, or exclude it via stage_exclude or .rayignore") from exc
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_symlink():
                self._link(entry, rel, real_chain, forced, layers, found)
            elif entry.is_dir(follow_symlinks=False):
                if os.path.isfile(os.path.join(entry.path, MARKER)):
                    continue  # an earlier staging output (e.g. --out inside the project)
                v = self.verdict(rel, True, forced, layers)
                if v is not _Verdict.SKIP:
                    self._walk(entry.path, rel, (*real_chain, os.path.join(real_chain[-1], entry.name)),
                               forced or v is _Verdict.FORCED, layers, found)
            elif entry.is_file(follow_symlinks=False):
                if self.verdict(rel, False, forced, layers) is _Verdict.STAGE:
                    st = entry.stat(follow_symlinks=False)
                    found.append(self._file(rel, os.path.join(real_chain[-1], entry.name), st.st_size))
            # Sockets, FIFOs and devices are never staged (reading a FIFO would hang).

    def _link(self, entry: os.DirEntry, rel: str, real_chain: tuple[str, ...], forced: bool,
              layers: _Layers, found: list[_File]) -> None:
        """A symlink is staged as what it points to, when that is inside the tree."""
        target = os.path.realpath(entry.path)
        try:
            st = os.stat(target)
        except OSError:
            st = None
        is_dir = st is not None and stat.S_ISDIR(st.st_mode)
        v = self.verdict(rel, is_dir, forced, layers)
        if v is _Verdict.SKIP:
            return  # an excluded link is fine wherever it points
        fix = f"remove the link, or exclude it: add /{rel} to .rayignore or to stage_exclude in [tool.raybake]"
        if target != self.root and not target.startswith(self.root + os.sep):
            raise StageError(f"symlink {rel} points outside the project, to {target}: "
                             "Ray's working_dir cannot carry it", fix=fix)
        if st is None:
            raise StageError(f"symlink {rel} points to {target}, which does not exist", fix=fix)
        if is_dir and target in real_chain:
            raise StageError(f"symlink {rel} points to {target}, a directory that contains it: "
                             "staging it would never end", fix=fix)
        # What the link points to must be stageable itself: `app.env -> .env`
        # does not smuggle a secret out under another name.
        if self.path_verdict(os.path.relpath(target, self.root).replace(os.sep, "/"), is_dir) is _Verdict.SKIP:
            return
        if is_dir:
            self._walk(entry.path, rel, (*real_chain, target), forced or v is _Verdict.FORCED, layers, found)
        elif stat.S_ISREG(st.st_mode):
            found.append(self._file(rel, target, st.st_size))

    def _file(self, rel: str, real_path: str, size: int) -> _File:
        return _File(rel, os.path.relpath(real_path, self.root), size,
                     named=self._include_named.match_file(rel))


def _ignored(rel: str, is_dir: bool, layers: _Layers) -> bool:
    """Git's rule: the last matching pattern wins, deeper files after shallower."""
    ignored = False
    for prefix, spec in layers:
        sub = rel[len(prefix):]
        decided = spec.check_file(sub + "/" if is_dir else sub).include
        if decided is not None:
            ignored = decided
    return ignored


def _include_prefixes(patterns: Sequence[str]) -> tuple[tuple[tuple[str, ...], bool], ...]:
    """(literal leading components, whether a wildcard follows) of each anchored pattern."""
    found = []
    for pattern in patterns:
        body = pattern.strip().rstrip("/")
        if not body or body.startswith(("#", "!")) or "/" not in body:
            continue  # unanchored: applies only where the walk goes anyway
        parts = body.lstrip("/").split("/")
        static: list[str] = []
        for part in parts:
            if _has_glob(part):
                break
            static.append(part)
        found.append((tuple(static), len(static) < len(parts)))
    return tuple(found)


def _check_size(files: Sequence[_File], max_bytes: int) -> None:
    total = sum(f.size for f in files)
    if total <= max_bytes:
        return
    dirs: dict[str, int] = {}
    for f in files:
        if "/" in f.rel:
            top = f.rel.split("/", 1)[0] + "/"
            dirs[top] = dirs.get(top, 0) + f.size
    largest = sorted(files, key=lambda f: (-f.size, f.rel))[:5]
    biggest_dirs = sorted(dirs.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    lines = [f"the working_dir to stage holds {format_size(total)} in {len(files)} files, "
             f"over the {format_size(max_bytes)} cap", "largest files:"]
    lines += [f"  {format_size(f.size):>10}  {f.rel}" for f in largest]
    if biggest_dirs:
        lines.append("largest top-level directories:")
        lines += [f"  {format_size(size):>10}  {name}" for name, size in biggest_dirs]
    # Name the largest file when leaving it out is enough (a data file beside the code), else its directory.
    example = largest[0].rel if total - largest[0].size <= max_bytes or not biggest_dirs else biggest_dirs[0][0]
    raise StageError("\n".join(lines),
                     fix=f"leave out what the job does not need: add patterns (e.g. {example!r}) to .rayignore or "
                         "to stage_exclude in [tool.raybake]; or raise stage_max_mb there")


def _python_path(files: Sequence[str], roots: Sequence[str]) -> tuple[str, ...]:
    """The project's import roots (Project.python_roots) that the staged tree holds."""
    return tuple(r for r in roots if any(f.startswith(r + "/") for f in files))


def _publish(root: str, files: Sequence[_File], out: Path, roots: Sequence[str]) -> StagedTree:
    """Copy into a temporary sibling of ``out``, then rename it into place."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".raybake-tmp-", dir=out.parent))
    except OSError as exc:
        raise StageError(f"cannot create a directory next to {out}: {exc.strerror or exc}",
                         fix="choose an --out directory in a writable place") from exc
    old: Path | None = None
    try:
        (tmp / MARKER).write_bytes(_MARKER_TEXT)  # so a leftover is recognised as ours
        copied = _copy(root, files, tmp)
        if out.exists():
            old = out.parent / f".raybake-old-{uuid.uuid4().hex[:12]}"
            os.rename(out, old)
        try:
            os.rename(tmp, out)
        except BaseException:
            if old is not None:
                os.rename(old, out)
                old = None
            raise
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise StageError(f"cannot stage into {out}: {exc.strerror or exc}",
                             fix=f"check that {out.parent} is writable and has room, or choose another --out") from exc
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return StagedTree(path=out, files=copied.files, total_bytes=copied.total_bytes,
                      content_hash=copied.content_hash, python_path=_python_path(copied.files, roots),
                      withheld=copied.withheld)


@dataclass(frozen=True)
class _Copied:
    files: tuple[str, ...]
    total_bytes: int
    content_hash: str
    withheld: tuple[str, ...]


def _open_source(root_fd: int, f: _File) -> int:
    """A read-only descriptor of ``f``'s regular file, opened one path component
    at a time with O_NOFOLLOW: a file or directory replaced by a symlink since
    the walk is refused, never followed."""
    fd = root_fd
    parts = f.source.split(os.sep)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            if fd != root_fd:
                os.close(fd)
            fd = nxt
        # O_NONBLOCK: a FIFO put in its place must not hang the open.
        src = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise StageError(f"{f.rel} was replaced by a symlink while it was being staged; "
                             "it was not followed",
                             fix="run `raybake stage` again once the tree stops changing") from exc
        raise StageError(f"cannot read {f.rel}: {exc.strerror}",
                         fix="make it readable, or exclude it via stage_exclude or .rayignore") from exc
    finally:
        if fd != root_fd:
            os.close(fd)
    if not stat.S_ISREG(os.fstat(src).st_mode):
        os.close(src)
        raise StageError(f"{f.rel} is no longer a regular file: it changed while it was being staged",
                         fix="run `raybake stage` again once the tree stops changing")
    return src


def _copy(root: str, files: Sequence[_File], dest: Path) -> _Copied:
    """Copy ``files`` (sorted) from ``root`` under ``dest``, except those whose
    first bytes are a credential (unless stage_include names them)."""
    tree = hashlib.sha256()
    total = 0
    dirs = {""}
    copied: list[str] = []
    withheld: list[str] = []
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for f in files:
            with open(_open_source(root_fd, f), "rb", closefd=True) as src:
                st = os.fstat(src.fileno())
                n = src.readinto(buf)
                if not f.named and looks_like_credentials(bytes(view[:min(n, SNIFF_BYTES)])):
                    withheld.append(f.rel)
                    continue
                parent = f.rel.rpartition("/")[0]
                if parent not in dirs:
                    os.makedirs(dest / parent, exist_ok=True)
                    while parent not in dirs:
                        dirs.add(parent)
                        parent = parent.rpartition("/")[0]
                target = dest / f.rel
                file_hash = hashlib.sha256()
                with open(target, "wb") as dst:
                    while n:
                        file_hash.update(view[:n])
                        dst.write(view[:n])
                        total += n
                        n = src.readinto(buf)
            executable = bool(st.st_mode & stat.S_IXUSR)
            private = not st.st_mode & (stat.S_IRGRP | stat.S_IROTH)  # its owner's eyes only: keep it so
            mode = (0o700 if executable else 0o600) if private else (0o755 if executable else 0o644)
            os.chmod(target, mode)
            os.utime(target, (STAGED_MTIME, STAGED_MTIME))
            # Canonical record: length-prefixed path bytes, the mode class, the content digest.
            path = os.fsencode(f.rel)
            tree.update(len(path).to_bytes(4, "big") + path + bytes([executable | private << 1])
                        + file_hash.digest())
            copied.append(f.rel)
    finally:
        os.close(root_fd)
    os.chmod(dest / MARKER, 0o644)
    os.utime(dest / MARKER, (STAGED_MTIME, STAGED_MTIME))
    for d in sorted(dirs, key=lambda d: -d.count("/") if d else 1):  # deepest first, the root last
        os.chmod(dest / d, 0o755)
        os.utime(dest / d, (STAGED_MTIME, STAGED_MTIME))
    return _Copied(tuple(copied), total, tree.hexdigest(), tuple(withheld))
