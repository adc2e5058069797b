"""The raybake command line: a thin shell over the library API.

The single error handler in ``main`` maps raybake's errors to exit codes;
nothing else in raybake exits."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys

import click

from raybake import __version__
from raybake.contract import DEFAULT_UV_VERSION
from raybake.errors import RaybakeError

# verb -> module under raybake.commands (imported only when that verb runs).
COMMANDS = {
    "build": "build",
    "tag": "tag",
    "dockerfile": "dockerfile",
    "verify": "verify",
    "stage": "stage",
    "job-config": "job_config",
    "submit": "submit",
    "py-executable": "py_executable",
    "pin": "pin",
    "sbom": "sbom",
    "audit": "audit",
}


class LazyGroup(click.Group):
    """Loads a command's module only when it runs, so `raybake tag` starts fast."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [v for v in COMMANDS if self._module(v) is not None]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = self._module(name)
        return module.command if module else None

    @staticmethod
    def _module(name: str):
        if name not in COMMANDS:
            return None
        try:
            return importlib.import_module(f"raybake.commands.{COMMANDS[name]}")
        except ModuleNotFoundError as exc:
            if exc.name == f"raybake.commands.{COMMANDS[name]}":
                return None
            raise


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="raybake",
                      message=f"%(prog)s, version %(version)s (puts uv {DEFAULT_UV_VERSION} into images unless a spec "
                              "sets uv_version)")
@click.option("-v", "--verbose", is_flag=True, help="Log every command raybake runs.")
def cli(verbose: bool) -> None:
    """Ship Python dependencies to Ray clusters as images built from uv.lock.

    Dependencies go into an image tagged by a hash of what decides them; the
    project's source goes to workers through Ray's working_dir."""
    logging.basicConfig(level=logging.DEBUG if verbose or os.environ.get("RAYBAKE_DEBUG") else logging.WARNING,
                        format="%(name)s: %(message)s")


EXIT_CRASH = 3  # a bug in raybake; 1 stays "findings" (a hook must not read a crash as one), 2 errors


def _terminate(signum, frame):
    # SIGTERM unwinds like Ctrl-C, so `finally` blocks stop child processes,
    # remove temporary contexts and no half-built image is tagged. A second
    # SIGTERM must not cut that cleanup short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _save_traceback() -> str:
    """Write the current exception's traceback to a log file; return where (or why not)."""
    import tempfile
    import time
    import traceback

    from raybake.paths import cache_dir

    text = f"raybake {__version__}, argv {sys.argv!r}\n{traceback.format_exc()}"
    name = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for directory in (lambda: cache_dir() / "logs", lambda: tempfile.gettempdir()):
        try:
            path = os.path.join(directory(), name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            return f"the traceback is in {path}"
        except OSError:
            continue
    return "the traceback could not be saved (no writable cache or temp directory)"


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(args=argv, prog_name="raybake", standalone_mode=False)
    except RaybakeError as exc:
        from raybake.console import print_error

        print_error(exc)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.UsageError as exc:  # the one-paragraph form of every error, the fix from --help
        from raybake.console import print_error

        command = exc.ctx.command_path if exc.ctx else "raybake"
        print_error(RaybakeError(exc.format_message(), fix=f"see `{command} --help`"))
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - a bug: one line for the user, the traceback for the report
        where = _save_traceback()
        summary = (str(exc).splitlines() or [""])[0][:300]
        click.echo(f"error: raybake failed unexpectedly ({type(exc).__name__}: {summary}); {where} "
                   "- please report it", err=True)
        sys.exit(EXIT_CRASH)
