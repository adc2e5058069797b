"""Options shared by several commands."""

import os
from pathlib import Path

import click

from raybake.console import PROGRESS_MODES
from raybake.settings import BUILD_JOBS, BUILD_TIMEOUT, LOCK_TIMEOUT, PUSH_TIMEOUT, REGISTRY_TIMEOUT
from raybake.spec import ENV_OVERRIDES

project_option = click.option(
    "--project", "-C", "project_dir", type=click.Path(path_type=Path, file_okay=False),
    default=Path("."), show_default=True, help="Directory of the uv project (or inside it).")

json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")

_OVERRIDE_HELP = {
    "repository": "Image repository of every spec, e.g. 127.0.0.1:5000/my-app "
                  "(RAYBAKE_REPOSITORY_<SPEC> sets one spec's).",
    "base_image": "Base image of every spec (RAYBAKE_BASE_IMAGE_<SPEC> sets one spec's, "
                  "e.g. RAYBAKE_BASE_IMAGE_PY313 for images/py313.yaml).",
    "network": "Build network of every spec: default, host or none.",
    "ca_bundle": "CA bundle (PEM certificates only) for uv behind an HTTPS proxy; default: $SSL_CERT_FILE.",
}


def _into_environment(variable: str):
    """A flag sets the variable it stands for, so the library reads one setting
    whether it came as a flag or from the environment (a per-spec variable still wins)."""
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value is not None:
            os.environ[variable] = str(value)

    return callback


def spec_override_options(command):
    """--repository, --base-image, --network, --ca-bundle: the RAYBAKE_* overrides as flags."""
    for variable, field in reversed(ENV_OVERRIDES.items()):
        command = click.option(f"--{field.replace('_', '-')}", envvar=variable, show_envvar=True,
                               expose_value=False, callback=_into_environment(variable),
                               metavar="PATH" if field == "ca_bundle" else "NAME",
                               help=_OVERRIDE_HELP[field])(command)
    return command


def audit_service_option(command):
    """--service-url: the OSV-compatible service `raybake audit` asks (RAYBAKE_AUDIT_SERVICE_URL)."""
    from raybake.audit import OSV_SERVICE, SERVICE_VARIABLE

    return click.option("--service-url", metavar="URL", envvar=SERVICE_VARIABLE, show_envvar=True,
                        expose_value=False, callback=_into_environment(SERVICE_VARIABLE),
                        help=f"OSV-compatible vulnerability service to ask (default: {OSV_SERVICE}).")(command)


jobs_option = click.option(
    "--jobs", "-j", metavar="N", envvar=BUILD_JOBS.variable, show_envvar=True,
    expose_value=False, callback=_into_environment(BUILD_JOBS.variable),
    help=f"Images built at the same time, on different base images (default {BUILD_JOBS.default}).")

TIMEOUTS_EPILOG = "Time limits in seconds, from the environment: " + "; ".join(
    f"{s.variable}: {s.what}, default {s.default:.0f}"
    for s in (BUILD_TIMEOUT, PUSH_TIMEOUT, REGISTRY_TIMEOUT, LOCK_TIMEOUT)) + "."


def progress_options(command):
    """--progress MODE and -q (raybake.console has the modes)."""
    command = click.option("-q", "--quiet", is_flag=True,
                           help="Print only results and errors (--progress quiet).")(command)
    return click.option(
        "--progress", type=click.Choice([*PROGRESS_MODES, "rawjson"]), default="auto", show_default=True,
        envvar="BUILDKIT_PROGRESS", show_envvar=True,
        help="auto: a compact live view in a terminal, plain elsewhere (CI); plain: every step and "
             "BuildKit's log; quiet: results and errors only.")(command)


def progress_mode(progress: str, quiet: bool) -> str:
    return "quiet" if quiet else progress
