import json
from pathlib import Path

import click

from raybake.commands.options import project_option, spec_override_options

FORMAT_HELP = ("ray: JSON for JobSubmissionClient.submit_job(**config); anyscale: an Anyscale job YAML; "
               "kuberay: a KubeRay RayJob (needs --upload or --working-dir-uri); kuberay-cluster: a KubeRay "
               "RayCluster; kuberay-service: a KubeRay RayService of --serve-import-path (needs --upload or "
               "--working-dir-uri); kuberay-prepull: a DaemonSet that pulls the images (every spec's, or NAME's) "
               "onto every node.")
KUBERAY_FORMATS = ("kuberay", "kuberay-cluster", "kuberay-service", "kuberay-prepull")


@click.command("job-config")
@click.argument("name", required=False)
@click.option("--entrypoint", help='The job command, e.g. "python main.py" (all formats but kuberay-cluster).')
@click.option("--format", "fmt", type=click.Choice(["ray", "anyscale", *KUBERAY_FORMATS]),
              default="ray", show_default=True, help=FORMAT_HELP)
@click.option("--upload", metavar="PREFIX",
              help="Upload the staged tree as PREFIX/<project>-<content hash>.zip (s3://BUCKET/PREFIX, "
                   "gs://BUCKET/PREFIX, file:///SHARED/DIR; skipped when it is there) and make that URI the "
                   "working_dir. Default: [tool.raybake] upload.")
@click.option("--serve-import-path", metavar="MODULE:APP",
              help="The Ray Serve application a kuberay-service deploys, e.g. serve_app:app.")
@click.option("--namespace", help="Kubernetes namespace of the KubeRay manifests.")
@click.option("--service-account", metavar="NAME", help="serviceAccountName of every pod of the KubeRay manifests.")
@click.option("--image-pull-secret", "image_pull_secrets", multiple=True, metavar="NAME",
              help="imagePullSecrets of every pod of the KubeRay manifests (a private registry); repeatable.")
@click.option("--working-dir-uri", metavar="URI",
              help="working_dir as a zip the cluster fetches (s3://, gs://, https://...): where you upload "
                   "the --working-dir-zip file. Default: the staged tree, which a job client uploads.")
@click.option("--working-dir-zip", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Also write the staged tree as a zip to upload to --working-dir-uri.")
@click.option("--stage-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Where the working_dir tree is staged (default: raybake's cache).")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON whatever the format: the spec, the image reference the config names "
                   "(the pin's when there is one), the format and the config itself.")
@click.option("--registry-login-secret", metavar="SECRET",
              help="anyscale: the cloud secret holding the login of the image's private registry "
                   "(spec field registry_login_secret).")
@click.option("--compute-config", metavar="NAME[:VERSION]",
              help="anyscale: the compute config the job runs on (spec field compute_config).")
@click.option("--cloud", metavar="NAME", help="anyscale: the cloud the job runs in (spec field cloud).")
@click.option("--max-retries", type=click.IntRange(min=0), metavar="N",
              help="anyscale: retries of a failed job (spec field max_retries).")
@click.option("--no-image-check", "no_image_check", is_flag=True,
              help="anyscale: do not run the image to check it against Anyscale's image requirements "
                   "(user ray, sudo, HOME and WORKDIR /home/ray, the system packages).")
@spec_override_options
@project_option
def command(name: str | None, entrypoint: str | None, fmt: str, upload: str | None,
            serve_import_path: str | None, namespace: str | None, service_account: str | None,
            image_pull_secrets: tuple[str, ...], working_dir_uri: str | None,
            working_dir_zip: Path | None, stage_dir: Path | None, as_json: bool, registry_login_secret: str | None,
            compute_config: str | None, cloud: str | None, max_retries: int | None, no_image_check: bool,
            project_dir: Path) -> None:
    """Print a Ray job config or KubeRay manifest: the image as node image, the source as working_dir."""
    import shlex

    from raybake.jobs import job_config
    from raybake.kuberay import PodOptions

    try:
        command_args = shlex.split(entrypoint or "")
    except ValueError as exc:  # unbalanced quotes
        raise click.UsageError(f"--entrypoint {entrypoint!r} is not a command line: {exc}") from None
    anyscale = {"registry_login_secret": registry_login_secret, "compute_config": compute_config,
                "cloud": cloud, "max_retries": max_retries}
    if fmt != "anyscale" and (any(v is not None for v in anyscale.values()) or no_image_check):
        given = ", ".join([*(f"--{k.replace('_', '-')}" for k, v in anyscale.items() if v is not None),
                           *(["--no-image-check"] if no_image_check else [])])
        raise click.UsageError(f"{given} go with --format anyscale only")
    if upload and working_dir_uri:
        raise click.UsageError("--upload makes the working_dir URI: give it or --working-dir-uri, not both")
    if fmt in ("kuberay-cluster", "kuberay-prepull"):
        if entrypoint or working_dir_uri or working_dir_zip or upload:
            raise click.UsageError(f"--format {fmt} carries no job: --entrypoint, --upload, --working-dir-uri "
                                   "and --working-dir-zip go with the job formats (submit jobs to a RayCluster "
                                   "with `raybake submit --address URL -- CMD...`)")
    elif fmt == "kuberay-service":
        if not serve_import_path or entrypoint:
            raise click.UsageError("--format kuberay-service deploys a Serve application, not a job: give "
                                   "--serve-import-path MODULE:APP and no --entrypoint")
    elif not command_args:
        raise click.UsageError(f"--format {fmt} needs --entrypoint (a command, e.g. \"python main.py\")")
    if serve_import_path and fmt != "kuberay-service":
        raise click.UsageError("--serve-import-path goes with --format kuberay-service")
    if (namespace or service_account or image_pull_secrets) and fmt not in KUBERAY_FORMATS:
        raise click.UsageError("--namespace, --service-account and --image-pull-secret go with the kuberay formats")
    document = job_config(project_dir, (name,) if name else (), fmt, entrypoint=command_args,
                          stage_dir=stage_dir, working_dir_uri=working_dir_uri, working_dir_zip=working_dir_zip,
                          upload=upload, serve_import_path=serve_import_path,
                          pods=PodOptions(namespace, service_account, image_pull_secrets), anyscale=anyscale,
                          check_image=not no_image_check)
    if as_json:
        from raybake.jobs import job_reference
        from raybake.planner import identities_for
        from raybake.project import load_project

        project = load_project(project_dir)
        (identity,) = identities_for(project, (name,) if name else ())
        click.echo(json.dumps({"spec": identity.spec.name, "reference": job_reference(project, identity),
                               "format": fmt, "config": document}, indent=2, sort_keys=True))
    elif fmt == "ray":
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
