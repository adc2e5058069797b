from pathlib import Path

import click

from raybake.commands.options import audit_service_option, json_option, project_option, spec_override_options
from raybake.errors import VulnerabilitiesFound


@click.command("audit")
@click.argument("name", required=False)
@audit_service_option
@json_option
@spec_override_options
@project_option
def command(name: str | None, as_json: bool, project_dir: Path) -> None:
    """Audit the packages a spec installs for known vulnerabilities (uv audit, OSV).

    Exactly the spec's selection of the lock: its groups, extras and workspace
    member. Exit 1 when there is any finding; --json: every finding's package,
    version, ID, aliases, severity, CVSS score and fixed versions."""
    from raybake.audit import audit_spec, counted
    from raybake.build import check_lock
    from raybake.planner import specs_for
    from raybake.project import load_project

    project = load_project(project_dir)
    (spec,) = specs_for(project, (name,) if name else ())
    check_lock(project)  # a stale lock is not what the image would install
    report = audit_spec(project, spec)
    click.echo(report.to_json() if as_json else report.render())
    if report.findings:
        raise VulnerabilitiesFound(
            f"{counted(len(report.findings), 'known vulnerability', 'known vulnerabilities')} in the packages of "
            f"spec '{spec.name}' (listed above)",
            fix="upgrade each package as its `fix:` line says (`uv lock --upgrade-package NAME`), then "
                "`raybake build`")
