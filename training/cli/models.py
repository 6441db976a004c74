"""``imgcls models``: what the repository holds. Imports no torch."""

import json
from pathlib import Path
from typing import Any

import click
import msgspec

from service.repository import ModelRepository
from service.settings import RepositorySettings

ROOT_OPTION = click.option(
    "--model-root", type=click.Path(path_type=Path), help="Model repository [env IMGCLS_MODEL_ROOT]."
)


def repository(model_root: Path | None) -> ModelRepository:
    return ModelRepository(model_root or RepositorySettings().model_root)


@click.group()
def models() -> None:
    """List, show and promote published models."""


@models.command("list")
@ROOT_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON object per version instead of a table.")
def list_models(model_root: Path | None, as_json: bool) -> None:
    """Every model and version, with aliases, test accuracy and calibration error."""
    repo = repository(model_root)
    rows: list[dict[str, Any]] = []
    for name in repo.models():
        aliases = repo.aliases(name)
        for version in repo.versions(name):
            manifest = repo.manifest(name, version)
            rows.append({
                "name": name,
                "version": version,
                "aliases": sorted(a for a, v in aliases.items() if v == version),
                "architecture": manifest.architecture,
                "test_accuracy": manifest.metrics.get("test_accuracy"),
                "ece": manifest.metrics.get("ece"),
                "created_at": manifest.created_at,
            })  # fmt: skip
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    if not rows:
        click.echo(f"no models in {repo.root} (train one with: imgcls train)")
        return
    click.echo(f"{'NAME':<20} {'VERSION':>7} {'ALIASES':<20} {'ARCHITECTURE':<14} {'ACCURACY':>8} {'ECE':>7}  CREATED")
    for row in rows:
        click.echo(
            f"{row['name']:<20} {row['version']:>7} {','.join(row['aliases']) or '-':<20} "
            f"{row['architecture']:<14} {row['test_accuracy'] or 0:>8.4f} {row['ece'] or 0:>7.4f}  {row['created_at']}"
        )


@models.command("show")
@click.argument("name")
@click.argument("version", required=False)
@ROOT_OPTION
def show(name: str, version: str | None, model_root: Path | None) -> None:
    """The manifest of NAME at VERSION (a number or an alias; default: production, else the latest)."""
    repo = repository(model_root)
    number = repo.resolve(name, version)
    manifest = repo.verify(name, number)
    click.echo(msgspec.json.format(msgspec.json.encode(manifest), indent=2).decode())


@models.command("promote")
@click.argument("name")
@click.argument("version")
@click.option("--alias", default="production", show_default=True, help="The alias to point at VERSION.")
@ROOT_OPTION
def promote(name: str, version: str, alias: str, model_root: Path | None) -> None:
    """Point an alias (production by default) at VERSION; a running service follows it."""
    repo = repository(model_root)
    number = repo.resolve(name, version)
    repo.verify(name, number)
    repo.set_alias(name, alias, number)
    click.echo(f"{name}: {alias} -> v{number}")
