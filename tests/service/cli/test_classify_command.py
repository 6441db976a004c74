import csv
import io
import json
import re
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from service.cli import cli
from tests.conftest import EXPLAINABLE_MODEL
from tests.service.api.conftest import png_bytes


def image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    for i in range(3):
        (folder / f"{i}.png").write_bytes(png_bytes(i))
    (folder / "nested" / "3.png").write_bytes(png_bytes(3))
    (folder / "notes.txt").write_text("not an image, and not picked up by suffix")
    return folder


def test_table_csv_and_jsonl(model_root: Path, tmp_path: Path) -> None:
    folder = image_folder(tmp_path)
    runner = CliRunner()
    args = ["classify", str(folder), "--model", "fashion-mnist", "--model-root", str(model_root), "--top-k", "2"]
    table = runner.invoke(cli, args)
    assert table.exit_code == 0, table.output
    assert "4 classified, 0 failed" in table.output
    assert str(folder / "nested" / "3.png") in table.output

    out = tmp_path / "out.csv"
    assert runner.invoke(cli, [*args, "--format", "csv", "--output", str(out)]).exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 4
    assert {"file", "label_1", "probability_1", "label_2", "probability_2", "error"} == set(rows[0])

    jsonl = runner.invoke(cli, [*args, "--format", "jsonl"])
    records = [json.loads(line) for line in jsonl.stdout.splitlines() if line.startswith("{")]
    assert len(records) == 4
    assert all(len(r["top"]) == 2 and r["top"][0]["probability"] >= r["top"][1]["probability"] for r in records)


def test_bad_files_are_reported_and_the_rest_classified(model_root: Path, tmp_path: Path) -> None:
    folder = image_folder(tmp_path)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = CliRunner().invoke(
        cli, ["classify", str(folder), "--model", "fashion-mnist", "--model-root", str(model_root)]
    )
    assert result.exit_code == 1
    assert "4 classified, 1 failed" in result.output
    assert re.search(r"broken\.png +error: CorruptImage", result.output), result.output


def test_usage_errors(model_root: Path, tmp_path: Path) -> None:
    folder = image_folder(tmp_path)
    runner = CliRunner()
    base = ["classify", str(folder), "--model-root", str(model_root)]
    unknown = runner.invoke(cli, [*base, "--model", "shoes"])
    assert unknown.exit_code == 1
    assert "ModelNotFound" in unknown.output
    variant = runner.invoke(cli, [*base, "--model", "fashion-mnist", "--variant", "int4"])
    assert variant.exit_code == 2
    assert "no variant 'int4'" in variant.output
    top_k = runner.invoke(cli, [*base, "--model", "fashion-mnist", "--top-k", "11"])
    assert top_k.exit_code == 2
    assert "10 labels" in top_k.output
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = runner.invoke(cli, ["classify", str(empty), "--model", "fashion-mnist", "--model-root", str(model_root)])
    assert nothing.exit_code == 2
    assert "no image files" in nothing.output


def test_explain_writes_each_images_map_beside_the_csv(explainable_repository: Path, tmp_path: Path) -> None:
    folder = image_folder(tmp_path)
    (folder / "nested" / "0.png").write_bytes(png_bytes(5))  # a second 0.png: its overlay is 0-2.png
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out, overlays = tmp_path / "out" / "answers.csv", tmp_path / "out"
    out.parent.mkdir()
    args = ["classify", str(folder), "--model", EXPLAINABLE_MODEL, "--model-root", str(explainable_repository)]
    result = CliRunner().invoke(cli, [*args, "--format", "csv", "--output", str(out), "--explain", str(overlays)])
    assert result.exit_code == 1  # the broken file; the others are classified and explained
    assert "5 explanations written to" in result.output and "5 classified, 1 failed" in result.output
    assert sorted(p.name for p in overlays.iterdir()) == ["0-2.png", "0.png", "1.png", "2.png", "3.png", "answers.csv"]
    picture = Image.open(overlays / "3.png")
    assert picture.format == "PNG" and picture.size == (224, 224)
    assert len(list(csv.DictReader(io.StringIO(out.read_text())))) == 6  # the CSV as without --explain


def test_explain_needs_a_version_with_an_explain_graph(model_root: Path, tmp_path: Path) -> None:
    folder = image_folder(tmp_path)
    args = ["classify", str(folder), "--model", "fashion-mnist", "--model-root", str(model_root)]
    refused = CliRunner().invoke(cli, [*args, "--explain", str(tmp_path / "maps")])
    assert refused.exit_code == 2
    assert "explanations need the last feature map" in refused.output and "(lenet5)" in refused.output
    assert not (tmp_path / "maps").exists()
