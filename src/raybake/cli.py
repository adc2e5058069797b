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
@click.version_option(__version__, prog_name="raybake")
@click.option("-v", "--verbose", is_flag=True, help="Log every command raybake runs.")
def cli(verbose: bool) -> None:
    """Ship Python dependencies to Ray clusters as images built from uv.lock.

    Dependencies go into an image tagged by a hash of what decides them; the
    project's source goes to workers through Ray's working_dir."""
    logging.basicConfig(level=logging.DEBUG if verbose or os.environ.get("RAYBAKE_DEBUG") else logging.WARNING,
                        format="%(name)s: %(message)s")


def _terminate(signum, frame):
    # SIGTERM unwinds like Ctrl-C, so `finally` blocks remove temporary
    # contexts and no half-built image is tagged.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(args=argv, prog_name="raybake", standalone_mode=False)
    except RaybakeError as exc:
        from raybake.console import err

        err().print("[bold red]error:[/] ", end="")
        err().print(exc.message, markup=False)
        if exc.fix:
            err().print("[bold]fix:[/] ", end="")
            err().print(exc.fix, markup=False)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
