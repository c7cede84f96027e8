"""`genq models pull NAME`: download a configured diffusers engine's model ahead of
time, so that the first job does not wait for (or, offline, fail on) the download."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genq.cli_help import App
from genq.engines.diffusers.config import DiffusersConfigError, parse
from genq.engines.diffusers.pool import offline

models_app = App(help="Models of the diffusers engines (GENQ_DIFFUSERS).")


@models_app.command("pull")
def pull(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="an engine of GENQ_DIFFUSERS, e.g. sd/text2image")
    ],
) -> None:
    """Download the engine's model into the Hugging Face cache (HF_HOME)."""
    from genq.settings import Settings

    settings = Settings()
    try:
        specs = parse(settings.diffusers)
    except DiffusersConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    spec = specs.get(name)
    if spec is None:
        known = ", ".join(sorted(specs)) or "none"
        typer.echo(f"no diffusers engine {name!r} (configured: {known})", err=True)
        raise typer.Exit(2)
    model = spec.model.model
    if Path(model).expanduser().is_dir():
        typer.echo(f"{name}: {model} is a local directory; nothing to download")
        return
    if offline(settings.hf_offline):
        typer.echo(
            f"{name}: offline (GENQ_HF_OFFLINE or HF_HUB_OFFLINE is set): cannot download {model}",
            err=True,
        )
        raise typer.Exit(1)
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(model)
    except Exception as exc:
        typer.echo(f"{name}: {model} could not be downloaded: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{name}: {model} is in {path}")
