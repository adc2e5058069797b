import json
from pathlib import Path

import click

from raybake.commands.options import project_option

FORMAT_HELP = ("ray: JSON for JobSubmissionClient.submit_job(**config); anyscale: an Anyscale job YAML; "
               "kuberay: a KubeRay RayJob (needs --working-dir-uri); kuberay-cluster: a KubeRay RayCluster.")


@click.command("job-config")
@click.argument("name", required=False)
@click.option("--entrypoint", help='The job command, e.g. "python main.py" (all formats but kuberay-cluster).')
@click.option("--format", "fmt", type=click.Choice(["ray", "anyscale", "kuberay", "kuberay-cluster"]),
              default="ray", show_default=True, help=FORMAT_HELP)
@click.option("--working-dir-uri", metavar="URI",
              help="working_dir as a zip the cluster fetches (s3://, gs://, https://...): where you upload "
                   "the --working-dir-zip file. Default: the staged tree, which a job client uploads.")
@click.option("--working-dir-zip", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Also write the staged tree as a zip to upload to --working-dir-uri.")
@click.option("--stage-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Where the working_dir tree is staged (default: raybake's cache).")
@project_option
def command(name: str | None, entrypoint: str | None, fmt: str, working_dir_uri: str | None,
            working_dir_zip: Path | None, stage_dir: Path | None, project_dir: Path) -> None:
    """Print a Ray job config or KubeRay manifest: the image as node image, the source as working_dir."""
    import shlex

    from raybake.jobs import job_config

    try:
        command_args = shlex.split(entrypoint or "")
    except ValueError as exc:  # unbalanced quotes
        raise click.UsageError(f"--entrypoint {entrypoint!r} is not a command line: {exc}") from None
    if fmt == "kuberay-cluster":
        if entrypoint or working_dir_uri or working_dir_zip:
            raise click.UsageError("a RayCluster carries no job: --entrypoint, --working-dir-uri and "
                                   "--working-dir-zip go with the job formats (submit jobs to the cluster "
                                   "with `raybake submit --address URL -- CMD...`)")
    elif not command_args:
        raise click.UsageError(f"--format {fmt} needs --entrypoint (a command, e.g. \"python main.py\")")
    document = job_config(project_dir, (name,) if name else (), fmt, entrypoint=command_args,
                          stage_dir=stage_dir, working_dir_uri=working_dir_uri, working_dir_zip=working_dir_zip)
    if fmt == "ray":
        click.echo(json.dumps(document, indent=2, sort_keys=True))
    else:
        click.echo(_yaml(document), nl=False)


def _yaml(document: dict) -> str:
    """YAML with multi-line strings (a RayJob's runtimeEnvYAML) as literal blocks, readable and editable."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    return yaml.dump(document, Dumper=Dumper, sort_keys=False)
