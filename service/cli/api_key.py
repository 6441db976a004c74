"""``imgcls api-key new``: make a key for the API; only its sha256 goes into the settings."""

import json

import click

from service.api.auth import key_hash, new_key


@click.group("api-key")
def api_key() -> None:
    """Create API keys for the service (IMGCLS_API_KEYS)."""


@api_key.command("new")
@click.option("--name", required=True, help="Who holds the key (shown in logs and rate-limit messages).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(["classify", "admin", "train"]),
    default=("classify",),
    show_default=True,
    help="Repeat for several scopes.",
)
def new(name: str, scopes: tuple[str, ...]) -> None:
    """Print a new random key (give it to the client; it is not stored) and its settings entry."""
    key = new_key()
    entry = {"name": name, "sha256": key_hash(key), "scopes": sorted(set(scopes))}
    click.echo(f"key (shown once):  {key}")
    click.echo(f"settings entry:    {json.dumps(entry)}")
    click.echo("add the entry to the JSON list in IMGCLS_API_KEYS, e.g. IMGCLS_API_KEYS='[<entry>, ...]'")
