"""``apimsync transform`` and ``apimsync lint``: a spec file through the pipeline, or checked against APIM's import
rules, without Databricks or APIM."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from apimsync.cli.base import (
    handle_errors,
    main,
    output_format,
    output_option,
)

# -- transform, lint --------------------------------------------------------------------------------

def _read_spec(spec: str) -> dict[str, Any]:
    from apimsync.errors import SpecError
    from apimsync.files import MAX_SPEC_BYTES, read_bytes
    from apimsync.spec import load_spec

    if spec == "-":
        return load_spec(sys.stdin.buffer.read(MAX_SPEC_BYTES + 1), origin="<stdin>")
    return load_spec(read_bytes(spec, SpecError, limit=MAX_SPEC_BYTES), origin=spec)


def _transformed(spec: dict[str, Any], pipeline: str | None, server_url: str | None) -> dict[str, Any]:
    from apimsync.transform import TransformContext, load_pipeline

    servers = spec.get("servers") or [{}]
    url = server_url or (servers[0].get("url") if isinstance(servers[0], dict) else None) or "https://localhost"
    title = str((spec.get("info") or {}).get("title") or "endpoint")
    ctx = TransformContext(endpoint=title, server_url=url, variables={"workspace": "local", "api_id": title})
    return load_pipeline(pipeline).run(spec, ctx)


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
@click.option("--pipeline", help="Pipeline file (default: the shipped transforms/databricks-serving.yaml).")
@click.option("--server-url", help="URL for the spec's single server (default: the spec's first server).")
@handle_errors
def transform(spec: str, out: str | None, pipeline: str | None, server_url: str | None) -> None:
    """Transform a Databricks serving spec (a file, or - for stdin) into one APIM imports.

    Exit 1, with the linter's findings on stderr, when the result would still be refused by APIM (the spec is
    written all the same, to look at); 2 for an unreadable spec or pipeline.
    """
    from apimsync.spec import pretty_spec
    from apimsync.transform import lint

    document = _transformed(_read_spec(spec), pipeline, server_url)
    result = pretty_spec(document)
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(result)
    else:
        click.echo(result, nl=False)
    errors = [f for f in lint(document) if f.severity == "error"]
    for finding in errors:
        click.echo(str(finding), err=True)
    if errors:
        click.echo(f"{len(errors)} problem(s) APIM would refuse the import for: fix them with a pipeline step "
                   "(see apimsync lint)", err=True)
        sys.exit(1)


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--pipeline", help="Pipeline to apply first (default: the shipped one; 'none' lints SPEC as is).")
@output_option
@click.pass_context
@handle_errors
def lint(ctx: click.Context, spec: str, pipeline: str | None, output: str | None) -> None:
    """Check a spec against APIM's import rules (after the pipeline). Exit 1 when there are errors."""
    from apimsync.transform import lint as run_lint

    findings = run_lint(_transformed(_read_spec(spec), pipeline, None))
    errors = [f for f in findings if f.severity == "error"]
    if output_format(ctx, output) == "json":
        click.echo(json.dumps({"errors": len(errors), "findings": [f.to_dict() for f in findings]}, indent=2))
    else:
        for finding in findings:
            click.echo(str(finding))
        click.echo(f"{len(errors)} error(s), {len(findings) - len(errors)} warning(s)")
    sys.exit(1 if errors else 0)


