import json
from pathlib import Path

import pytest
import record
import tables

STARTUP = {
    "mode": "startup",
    "target": {"workers": 2, "model": "m", "architecture": "cnn"},
    "runs": [{"ready_s": 1.0, "listening_s": 0.5}, {"ready_s": 1.2, "listening_s": 0.6}],
    "ready_s": {"median": 1.1, "min": 1.0, "max": 1.2, "rounds": [1.0, 1.2]},
    "listening_s": {"median": 0.55, "min": 0.5, "max": 0.6, "rounds": [0.5, 0.6]},
}


def stored(folder: Path, name: str, figures: dict) -> Path:  # type: ignore[type-arg]
    return record.save(record.begin(name), figures, folder)


def test_every_generated_table_in_the_docs_matches_the_stored_results() -> None:
    blocks = [match for doc in tables.DOCS for match in tables.BLOCK.finditer(doc.read_text())]
    assert len(blocks) >= 3, "README.md and docs/benchmarks.md hold generated tables"
    assert tables.stale() == [], "run .venv/bin/python benchmarks/tables.py and commit the docs"


def test_a_table_names_its_result_and_a_newer_result_makes_the_doc_stale(tmp_path: Path) -> None:
    results = tmp_path / "results"
    first = stored(results, "startup-small", STARTUP)
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- table:startup startup-small -->\nold\n<!-- /table -->\nend\n")
    assert tables.stale((doc,), results) == [f"{doc}: startup startup-small"]

    doc.write_text(tables.regenerate(doc.read_text(), results))
    text = doc.read_text()
    assert text.startswith("intro\n<!-- table:startup startup-small -->\n| workers |")
    assert "| 2 | 1.10 (1.00–1.20) | 0.55 |" in text
    assert str(first) in text and text.endswith("<!-- /table -->\nend\n")
    assert tables.stale((doc,), results) == []

    stored(results, "startup-small", STARTUP | {"ready_s": {"median": 2.0, "min": 2.0, "max": 2.0, "rounds": [2.0]}})
    assert len(tables.stale((doc,), results)) == 1  # the newest run of that name is what the doc must show
    assert "| 2 | 2.00 (2.00–2.00) |" in tables.regenerate(text, results)


def test_a_pinned_file_and_a_result_not_measured_yet(tmp_path: Path) -> None:
    pinned = stored(tmp_path, "startup-pinned", STARTUP)
    assert "1.10 (1.00–1.20)" in tables.render("startup", [str(pinned)], tmp_path)
    assert "Not measured yet" in tables.render("startup", ["never-run"], tmp_path)


def test_an_unknown_kind_of_table_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unknown table kind 'speed'"):
        tables.render("speed", ["x"], tmp_path)


def test_the_serving_table_shows_medians_ratios_and_the_ceiling(tmp_path: Path) -> None:
    def server(label: str, rates: list[float]) -> dict:  # type: ignore[type-arg]
        return {
            "label": label,
            "requests_per_s": {"median": sorted(rates)[1], "min": min(rates), "max": max(rates), "rounds": rates},
            "p50_ms": {"median": 4.0},
            "p99_ms": {"median": 9.0, "min": 8.0, "max": 11.0},
            "non200": 0,
            "socket_errors": 0,
        }

    figures = {
        "mode": "capacity",
        "target": {
            "model": "m",
            "version": 1,
            "variant": "fp32",
            "architecture": "cnn",
            "input_size": [28, 28],
            "image": "a.png",
            "image_bytes": 394,
            "connections": 32,
            "rounds": 3,
            "duration_s": 15,
        },
        "servers": {
            "imgcls": server("imgcls (2 × 1 thread)", [6000, 6600, 7000]),
            "bentoml": server("bentoml 1.4.40 (2 × 1 thread)", [1100, 1200, 1300]),
        },
        "ratios": {
            "ours_over_bentoml": {"of_medians": 5.5, "per_round": {"min": 5.1, "max": 6.0}},
            "ours_over_ceiling": {"of_medians": 0.3, "per_round": {"min": 0.28, "max": 0.31}},
        },
        "ceiling": {
            "layout": {"processes": 2, "threads": 1},
            "batch": 32,
            "images_per_s": {"median": 22000, "min": 21000, "max": 23000},
        },
        "crowded_turns": 0,
    }
    text = tables.render("serve", [str(stored(tmp_path, "serve-small", figures))], tmp_path)
    assert "| imgcls (2 × 1 thread) | 6,600 (6,000–7,000) | 4.00 | 9.00 (8.00–11.0) | 0, 0 |  |" in text
    assert "**5.50×** (rounds 5.10–6.00×)" in text
    assert "22,000 (21,000–23,000) images/s" in text and "**30.0%**" in text
    assert json.loads(Path(text.split("Source: `")[1].split("`")[0]).read_text())["benchmark"] == "serve-small"
