"""``imgcls models``: what the repository holds. Imports no torch."""

import json
from pathlib import Path
from typing import Any

import click
import msgspec

from service.repository import ModelRepository
from service.repository.notify import promote as promote_version
from service.settings import RepositorySettings
from training.cli.import_torchvision import import_torchvision

ROOT_OPTION = click.option(
    "--model-root", type=click.Path(path_type=Path), help="Model repository [env IMGCLS_MODEL_ROOT]."
)


def repository(model_root: Path | None) -> ModelRepository:
    return ModelRepository(model_root or RepositorySettings().model_root)


@click.group()
def models() -> None:
    """List, show, promote and import models."""


@models.command("list")
@ROOT_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON object per version instead of a table.")
def list_models(model_root: Path | None, as_json: bool) -> None:
    """Every model and version, with aliases, test accuracy, calibration error and variants (int8)."""
    repo = repository(model_root)
    rows: list[dict[str, Any]] = []
    for name in repo.models():
        aliases = repo.aliases(name)
        for version in repo.versions(name):
            manifest = repo.manifest(name, version)
            rows.append(
                {
                    "name": name,
                    "version": version,
                    "aliases": sorted(a for a, v in aliases.items() if v == version),
                    "architecture": manifest.architecture,
                    "test_accuracy": manifest.metrics.get("test_accuracy"),
                    "ece": manifest.metrics.get("ece"),
                    "variants": {key: variant.metrics["test_accuracy"] for key, variant in manifest.variants.items()},
                    "created_at": manifest.created_at,
                }
            )
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    if not rows:
        click.echo(f"no models in {repo.root} (train one with: imgcls train)")
        return
    click.echo(
        f"{'NAME':<20} {'VERSION':>7} {'ALIASES':<20} {'ARCHITECTURE':<14} {'ACCURACY':>8} {'ECE':>7} "
        f"{'VARIANTS':<8}  CREATED"
    )
    for row in rows:
        click.echo(
            f"{row['name']:<20} {row['version']:>7} {','.join(row['aliases']) or '-':<20} "
            f"{row['architecture']:<14} {row['test_accuracy'] or 0:>8.4f} {row['ece'] or 0:>7.4f} "
            f"{','.join(row['variants']) or '-':<8}  {row['created_at']}"
        )


@models.command("show")
@click.argument("name")
@click.argument("version", required=False)
@ROOT_OPTION
def show(name: str, version: str | None, model_root: Path | None) -> None:
    """The manifest of NAME at VERSION (a number or an alias; default: production, else the latest).

    Every file is re-hashed first, variants included; ``variants`` lists each variant's file, method and
    test metrics next to the fp32 ones.
    """
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
    """Point an alias (production by default) at VERSION; running servers follow it.

    Servers notice within IMGCLS_WATCH_INTERVAL_S seconds, or at once when IMGCLS_REDIS_URL is set here and
    there (a message on the imgcls:repository channel).
    """
    repo = repository(model_root)
    number = repo.resolve(name, version)
    repo.verify(name, number)
    promote_version(repo, name, number, alias=alias, redis_url=RepositorySettings().redis_url)
    click.echo(f"{name}: {alias} -> v{number}")


models.add_command(import_torchvision)
