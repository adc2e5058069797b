"""One exception hierarchy. Every error says what went wrong and how to fix it.

Only the CLI turns these into exit codes (see ``raybake.cli``)."""

from __future__ import annotations


class RaybakeError(Exception):
    """Base of every error raybake reports to a user."""

    exit_code = 2

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return self.message if not self.fix else f"{self.message}\nFix: {self.fix}"


class ProjectError(RaybakeError):
    """The uv project is missing, unreadable or inconsistent (pyproject.toml, uv.lock)."""


class LockOutOfDate(ProjectError):
    """uv.lock does not match pyproject.toml."""


class SpecError(RaybakeError):
    """An image spec (images/*.yaml or [tool.raybake]) is invalid."""


class SettingError(RaybakeError):
    """An environment setting (RAYBAKE_*) has a value raybake cannot use."""


class ToolError(RaybakeError):
    """An outside tool (uv, git, ...) failed or is missing."""


class ToolTimeout(ToolError):
    """An outside tool did not finish within its time limit (and was stopped)."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


class NoInterpreter(ToolError):
    """uv found no interpreter on this machine that satisfies requires-python."""


class EngineError(RaybakeError):
    """The Docker daemon or buildx cannot be used."""


class InvalidReference(RaybakeError):
    """An image reference Docker refuses (too long, not lowercase, bad characters)."""


class BuildError(RaybakeError):
    """A build ran and failed."""


class ImageVanished(RaybakeError):
    """The image just built was removed by someone else before raybake could tag it."""


class RegistryError(RaybakeError):
    """The registry cannot be reached or refused us: existence cannot be told."""


class VerificationFailed(RaybakeError):
    """A built image's environment does not match the lock."""

    exit_code = 1


class VulnerabilitiesFound(RaybakeError):
    """A spec's selection holds packages with known vulnerabilities (`raybake audit`, `build --audit`)."""

    exit_code = 1


class StageError(RaybakeError):
    """The working_dir tree cannot be staged (size cap, symlink leaving the tree)."""


class JobConfigError(RaybakeError):
    """A job config cannot be made as asked (a working_dir the cluster cannot fetch)."""


class JobFailed(RaybakeError):
    """A submitted Ray job did not succeed."""

    exit_code = 1


class StaleError(RaybakeError):
    """A check found something stale (the pin)."""

    exit_code = 1


class UnknownPinVersion(ProjectError):
    """The pin was written in a format this raybake does not know: never rewritten."""


class BuildsFailed(RaybakeError):
    """Some of several images failed to build; each failure was reported as it happened."""

    def __init__(self, message: str, fix: str, *, findings_only: bool) -> None:
        super().__init__(message, fix)
        # Exit 1 only when every failure is a finding (a rejected environment).
        self.exit_code = 1 if findings_only else 2


class ImageMissing(RaybakeError):
    """A pinned reference is neither in its registry nor in the local image store."""

    exit_code = 1


class UploadError(RaybakeError):
    """The working_dir package cannot be uploaded (credentials, bucket, endpoint)."""
