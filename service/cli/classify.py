"""``imgcls classify PATH...``: classify image files and folders offline, with the service's own pipeline."""

import csv
import json
import sys
from pathlib import Path
from typing import TextIO

import click
from tqdm import tqdm

from service.imaging import DecodeLimits
from service.inference.errors import ExplanationUnavailable, VariantNotFound
from service.inference.explain import open_session
from service.inference.offline import FileResult, classify_files, image_files, load_predictor, write_overlays
from service.inference.predictor import FP32
from service.inference.providers import choose_providers, default_threads
from service.repository import ModelRepository
from service.settings import ServiceSettings


def write_table(rows: list[FileResult], out: TextIO) -> None:
    width = max((len(str(r.path)) for r in rows), default=4)
    out.write(f"{'FILE':<{width}}  {'LABEL':<16} {'PROB':>6}  NEXT\n")
    for row in rows:
        if row.result is None:
            out.write(f"{row.path!s:<{width}}  error: {row.error}\n")
            continue
        best, *rest = row.result.top
        others = ", ".join(f"{p.label} {p.probability:.3f}" for p in rest)
        out.write(f"{row.path!s:<{width}}  {best.label:<16} {best.probability:>6.3f}  {others}\n")


def as_record(row: FileResult) -> dict[str, object]:
    if row.result is None:
        return {"file": str(row.path), "error": row.error}
    return {
        "file": str(row.path),
        "top": [{"label": p.label, "index": p.index, "probability": round(p.probability, 6)} for p in row.result.top],
    }


def write_csv(rows: list[FileResult], out: TextIO, top_k: int) -> None:
    writer = csv.writer(out)
    header = ["file"] + [f"{kind}_{i}" for i in range(1, top_k + 1) for kind in ("label", "probability")] + ["error"]
    writer.writerow(header)
    for row in rows:
        cells: list[object] = [str(row.path)]
        for prediction in row.result.top if row.result else []:
            cells += [prediction.label, f"{prediction.probability:.6f}"]
        cells += [""] * (len(header) - 1 - len(cells)) + [row.error or ""]
        writer.writerow(cells)


def write(rows: list[FileResult], out: TextIO, fmt: str, top_k: int) -> None:
    if fmt == "table":
        write_table(rows, out)
    elif fmt == "csv":
        write_csv(rows, out, top_k)
    else:
        for row in rows:
            out.write(json.dumps(as_record(row)) + "\n")


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--model", "name", required=True, help="Model name in the repository.")
@click.option("--version", "reference", help="Version number or alias [default: production, else latest].")
@click.option("--variant", default=FP32, show_default=True, help="fp32 or a variant from the manifest (int8).")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True, help="Labels per image.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Images per run.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "jsonl"]), default="table", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
@click.option("--model-root", type=click.Path(path_type=Path), help="Model repository [env IMGCLS_MODEL_ROOT].")
@click.option(
    "--explain",
    "explain_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write each image's top-1 class activation map, drawn over it, into this folder (<name>.png).",
)
def classify(
    paths: tuple[Path, ...],
    name: str,
    reference: str | None,
    variant: str,
    top_k: int,
    batch_size: int,
    fmt: str,
    output: Path | None,
    model_root: Path | None,
    explain_dir: Path | None,
) -> None:
    """Classify image files and folders (searched recursively for .jpg .jpeg .png .webp) without a server.

    Files that cannot be read are reported (an error row) and the rest still run; the exit code is 1 if any
    file failed. --explain needs a version published with its explain graph (docs/explanations.md).
    """
    settings = ServiceSettings()
    repository = ModelRepository(model_root or settings.model_root)
    try:
        manifest, predictor = load_predictor(repository, name, reference, variant)
    except VariantNotFound as error:
        raise click.BadParameter(str(error), param_hint="--variant") from error
    if top_k > len(manifest.labels):
        raise click.BadParameter(f"the model has {len(manifest.labels)} labels", param_hint="--top-k")
    try:
        explainer = (
            open_session(repository, manifest, providers=choose_providers("auto"), intra_op_threads=default_threads(1))
            if explain_dir is not None
            else None
        )
    except ExplanationUnavailable as error:
        raise click.BadParameter(str(error), param_hint="--explain") from error
    files = image_files(paths)
    if not files:
        raise click.UsageError("no image files (.jpg .jpeg .png .webp) under the given paths")
    limits = DecodeLimits(
        formats=frozenset(settings.image_formats),
        max_bytes=settings.max_image_bytes,
        max_pixels=settings.max_image_pixels,
    )
    results = classify_files(files, manifest, predictor, top_k=top_k, batch_size=batch_size, limits=limits)
    rows = list(tqdm(results, total=len(files), unit="image", desc=f"{name} v{manifest.version}", file=sys.stderr))
    if output is None:
        write(rows, sys.stdout, fmt, top_k)
    else:
        with output.open("w", newline="") as out:
            write(rows, out, fmt, top_k)
    if explain_dir is not None and explainer is not None:
        overlays = write_overlays(rows, manifest, explainer, explain_dir, batch_size=batch_size, limits=limits)
        click.echo(f"{len(overlays)} explanations written to {explain_dir}", err=True)
    failed = sum(row.result is None for row in rows)
    click.echo(f"{len(rows) - failed} classified, {failed} failed", err=True)
    if failed:
        sys.exit(1)
