"""The documentation's figure tables, made from the stored results: no figure is typed by hand.

    .venv/bin/python benchmarks/tables.py             # rewrite every generated table in README.md and docs/*.md
    .venv/bin/python benchmarks/tables.py --check     # exit 1, naming each table that differs from its results
    .venv/bin/python benchmarks/tables.py serve benchmarks/results/serve-small-20261204.json   # print one

A generated table sits between two comments in a Markdown file:

    <!-- table:KIND SOURCE [SOURCE ...] -->
    (what this script writes)
    <!-- /table -->

KIND is one of RENDERERS below. SOURCE is a result's name, meaning the newest file in benchmarks/results/
whose ``benchmark`` is that name (so a new run of ``serve-small`` shows up with the next rewrite), or the path
of one file (pinned). Every table names the file(s) it was made from. tests/benchmarks/test_tables.py runs
the check, so the docs cannot drift from the stored results.
"""

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DOCS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
BLOCK = re.compile(r"<!-- table:(?P<kind>\S+)(?P<sources>(?: \S+)+) -->\n(?P<body>.*?)<!-- /table -->", re.DOTALL)

Result = dict[str, Any]


# ------------------------------------------------------------------------------------------- formatting


def number(value: float | None, unit: str = "") -> str:
    """Thousands separated; 0 decimals from 100 up, 1 from 10, else 2."""
    if value is None:
        return "–"
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f}{unit}"


def spread(figure: dict[str, Any] | None, unit: str = "") -> str:
    """'median (min–max)' of a rounds.spread figure."""
    if not figure:
        return "–"
    return f"{number(figure['median'], unit)} ({number(figure['min'])}–{number(figure['max'], unit)})"


def times(figure: dict[str, Any]) -> str:
    """A rounds.ratio figure: the ratio of the medians, and the range of the per-round ratios."""
    per = figure["per_round"]
    return f"**{figure['of_medians']:.2f}×** (rounds {per['min']:.2f}–{per['max']:.2f}×)"


def percent(figure: dict[str, Any]) -> str:
    per = figure["per_round"]
    return f"**{figure['of_medians']:.1%}** (rounds {per['min']:.1%}–{per['max']:.1%})"


def source_line(result: Result) -> str:
    machine = result.get("machine", {})
    load = ""
    if "load_1min_before" in machine and "load_1min_after" in machine:
        load = f", load {machine['load_1min_before']:.2f} → {machine['load_1min_after']:.2f}"
    where = f"{machine.get('cpu_model', '?')}, {machine.get('cores', '?')} cores{load}" if "cores" in machine else ""
    commit = result.get("versions", {}).get("imgcls", {}).get("commit")
    made = f"{(result.get('started') or '')[:16].replace('T', ' ')} UTC" if result.get("started") else ""
    parts = [f"`{result['_path']}`", made, where, f"imgcls {commit[:7]}" if commit else ""]
    return "Source: " + "; ".join(part for part in parts if part) + "."


# -------------------------------------------------------------------------------------------- renderers


def serve(results: list[Result]) -> list[str]:
    (result,) = results
    target, servers, ratios, ceiling = result["target"], result["servers"], result["ratios"], result["ceiling"]
    lines = [
        "| server | requests/s: median (min–max) | p50 ms | p99 ms: median (min–max) | non-200, socket errors "
        "| imgcls ÷ it (medians) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, server in servers.items():
        label = server["label"]
        if "average_batch_size" in server:
            label += f", average batch {number(server['average_batch_size']['median'])}"
        versus = times(ratios[f"ours_over_{name}"]) if f"ours_over_{name}" in ratios else ""
        lines.append(
            f"| {label} | {spread(server['requests_per_s'])} | {number(server['p50_ms']['median'])} "
            f"| {spread(server['p99_ms'])} | {server['non200']}, {server['socket_errors']} | {versus} |"
        )
    layout = ceiling["layout"]
    lines.append(
        f"| raw onnxruntime, the ceiling: {layout['processes']} process(es) × {layout['threads']} thread(s), "
        f"batch {ceiling['batch']} (best of the sweep) | {spread(ceiling['images_per_s'])} images/s | | | "
        f"| imgcls ÷ ceiling {percent(ratios['ours_over_ceiling'])} |"
    )
    h, w = target["input_size"]
    lines += [
        "",
        f"{target['model']} v{target['version']} {target['variant']} ({target['architecture']}, {h}×{w}), "
        f"{target['image']} ({target['image_bytes']:,} bytes), {target['connections']} connections, "
        f"{target['rounds']} rounds of {target['duration_s']:g} s, each server alone, the order reversed every "
        f"round; {result['crowded_turns']} turn(s) disturbed by other processes. {source_line(result)}",
    ]
    return lines


def overload(results: list[Result]) -> list[str]:
    (result,) = results
    target = result["target"]
    p99, accepted = result["server_p99_ms_accepted"], result["accepted_per_s"]
    connections = {"normal": target["connections"], "overload": target["overload_connections"]}
    lines = [
        "| phase | connections | accepted requests/s: median (min–max) "
        "| p99 of accepted requests, server histogram, ms |",
        "|---|---:|---:|---:|",
    ]
    for phase in ("normal", "overload", "after"):
        count = connections.get(phase, target["connections"])
        lines.append(f"| {phase} | {count} | {spread(accepted[phase])} | {spread(p99[phase])} |")
    memory = result["rss_mib"]
    lines += [
        "",
        f"Accepted p99 at {target['overload_connections']} connections over p99 at {target['connections']}, by the "
        f"server's own histogram: {times(result['overload_over_normal_p99'])}; throughput right after the overload: "
        f"{percent(result['after_over_normal_throughput'])} of before. 503s without Retry-After: "
        f"{result['retry_after_missing']}; other statuses: {result['other_statuses']}; socket errors: "
        f"{result['socket_errors']}; server memory {number(memory['before'])} → {number(memory['after'])} MiB. "
        f"{target['rounds']} rounds of {target['duration_s']:g} s phases, {target['model']} "
        f"({target['architecture']}). {source_line(result)}",
    ]
    return lines


def startup(results: list[Result]) -> list[str]:
    (result,) = results
    target = result["target"]
    return [
        "| workers | launch → /healthz/ready, s: median (min–max) | first answer, s |",
        "|---:|---:|---:|",
        f"| {target['workers']} | {spread(result['ready_s'])} | {number(result['listening_s']['median'])} |",
        "",
        f"{len(result['runs'])} runs, {target['model']} ({target['architecture']}). {source_line(result)}",
    ]


def soak(results: list[Result]) -> list[str]:
    (result,) = results
    windows = result["windows"]
    p99 = [w["classify"]["p99_ms"] for w in windows if "classify" in w]
    requests = sum(k["requests"] for w in windows for k in w.values() if isinstance(k, dict))
    jobs = result["jobs"]
    return [
        "| minutes | requests | failed (transport errors included) | jobs finished / submitted (succeeded) "
        "| classify p99 per window, ms | API memory, first → last window |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {result['minutes']:g} | {requests:,} | {result['failed']} | {jobs['finished']} / {jobs['submitted']} "
        f"({jobs['by_status'].get('succeeded', 0)}) | {number(min(p99))}–{number(max(p99))} "
        f"| {number(windows[0]['api_rss_mb'])} → {number(windows[-1]['api_rss_mb'])} MB |",
        "",
        source_line(result),
    ]


def recipe(results: list[Result]) -> list[str]:
    lines = [
        "| recipe | model | epochs | test accuracy | ECE before → after temperature scaling | training s | wall s "
        "| images/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['recipe']} | {r['model']} | {r['epochs']} | **{r['test_accuracy']:.4f}** "
            f"| {r['ece_uncalibrated']:.4f} → {r['ece']:.4f} | {number(r['training_seconds'])} "
            f"| {number(r['wall_seconds'])} | {number(r['images_per_second'])} |"
        )
    return [*lines, "", *(source_line(r) for r in results)]


def photos(results: list[Result]) -> list[str]:
    (result,) = results
    lines = [
        "| base | import | epoch, backbone frozen | epochs 2–3, everything trained | whole fine-tune command "
        "| test accuracy |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for run in result["runs"]:
        seconds = run["epoch_seconds"]
        lines.append(
            f"| `{run['architecture']}` | {run['import_seconds']} s | {seconds[0]} s "
            f"| {', '.join(str(s) for s in seconds[1:])} s | {run['fine_tune_seconds']} s "
            f"| {run['test_accuracy']:.3f} |"
        )
    return [*lines, "", source_line(result)]


def explain(results: list[Result]) -> list[str]:
    """benchmarks/explain.py: classify and explanations side by side, onnxruntime alone and over HTTP."""
    (result,) = results
    lines = ["| model | measured | per second | median latency |", "|---|---|---:|---:|"]
    for section, where in (("onnxruntime", "onnxruntime alone"), ("http", "HTTP, one client")):
        for model, contenders in result[section].items():
            facts = result["models"][model]
            height, width = facts["input_size"]
            for name, figure in contenders.items():
                lines.append(
                    f"| `{facts['architecture']}` {height}×{width} | {where}: {name} | {spread(figure['per_second'])} "
                    f"| {spread(figure['median_ms'], ' ms')} |"
                )
    return [*lines, "", source_line(result)]


def flat(value: Any) -> str:
    """A nested figure on one line: {"a": 1, "b": {"c": 2}} -> "(a 1, b (c 2))"."""
    if isinstance(value, dict):
        return "(" + ", ".join(f"{key} {flat(item)}" for key, item in value.items()) + ")"
    if isinstance(value, list):
        return ", ".join(flat(item) for item in value)
    return str(value)


def gpu(results: list[Result]) -> list[str]:
    (result,) = results
    lines = ["| check | result |", "|---|---|"]
    for name, section in result["checks"].items():
        if section.get("skipped"):
            shown = f"not run: {section['skipped']}"
        else:
            shown = "; ".join(f"{key} {flat(value)}" for key, value in section.items() if key != "ok")
            shown = ("**pass** " if section.get("ok") else "**FAIL** " if "ok" in section else "") + shown
        lines.append(f"| {name} | {shown} |")
    return [*lines, "", f"{result['device']}. {source_line(result)}"]


def summary(results: list[Result]) -> list[str]:
    """README's serving rows: one line per result, whatever its mode."""
    lines = ["| serving (2 cores, load generator on the same machine) | figure |", "|---|---|"]
    for r in results:
        target = r["target"]
        h, w = target["input_size"]
        network = target["model"] if target["architecture"] == "onnx" else target["architecture"]  # imported: its name
        what = f"{network} {h}×{w}, {target['connections']} connections"
        if r["mode"] == "capacity":
            ours = r["servers"]["imgcls"]
            peers = [
                f"{times(r['ratios'][f'ours_over_{name}'])} {r['servers'][name]['label'].split(' (')[0]}"
                for name in r["servers"]
                if name != "imgcls"
            ]
            figure = (
                f"{number(ours['requests_per_s']['median'])} requests/s (median of {target['rounds']} rounds), "
                f"p99 {number(ours['p99_ms']['median'])} ms; " + ", ".join(peers) + ("; " if peers else "")
            )
            figure += f"{percent(r['ratios']['ours_over_ceiling'])} of raw onnxruntime"
        elif r["mode"] == "overload":
            what = f"overload, {target['overload_connections']} against {target['connections']} connections"
            figure = f"accepted p99 {times(r['overload_over_normal_p99'])} unloaded (server histogram)"
        else:
            what = f"start to ready, {target['workers']} workers"
            figure = f"{spread(r['ready_s'])} s"
        lines.append(f"| {what} | {figure} (`{r['_path']}`) |")
    return lines


RENDERERS: dict[str, Callable[[list[Result]], list[str]]] = {
    "serve": serve,
    "overload": overload,
    "startup": startup,
    "soak": soak,
    "recipe": recipe,
    "photos": photos,
    "explain": explain,
    "gpu": gpu,
    "summary": summary,
}


# ---------------------------------------------------------------------------------------------- sources


def load(path: Path) -> Result:
    result: Result = json.loads(path.read_text())
    result["_path"] = str(path.resolve().relative_to(REPO)) if path.resolve().is_relative_to(REPO) else str(path)
    return result


def newest(name: str, folder: Path) -> Path | None:
    """The newest result file in ``folder`` whose ``benchmark`` is ``name`` (by the time the run finished;
    within one second, the file written last)."""
    found = []
    for path in folder.glob("*.json"):
        try:
            stored = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        if isinstance(stored, dict) and stored.get("benchmark") == name:
            found.append((stored.get("finished", ""), path.stat().st_mtime_ns, path))
    return max(found)[2] if found else None


def resolve(source: str, folder: Path) -> Path | None:
    if source.endswith(".json"):
        return REPO / source
    return newest(source, folder)


def render(kind: str, sources: list[str], folder: Path = RESULTS) -> str:
    if kind not in RENDERERS:
        raise SystemExit(f"unknown table kind {kind!r} (known: {', '.join(RENDERERS)})")
    paths = [resolve(source, folder) for source in sources]
    found = [path for path in paths if path is not None and path.is_file()]
    missing = [source for source, path in zip(sources, paths, strict=True) if path is None or not path.is_file()]
    lines = RENDERERS[kind]([load(path) for path in found]) if found else []
    if missing:
        lines += [""] if lines else []
        lines.append(
            f"_Not measured yet: no stored result for {', '.join(f'`{m}`' for m in missing)}; the commands are in "
            'docs/benchmarks.md, "How to read and reproduce"._'
        )
    return "\n".join(lines) + "\n"


def render_file(path: Path, kind: str) -> str:
    return render(kind, [str(path.resolve())], path.parent)


def regenerate(text: str, folder: Path = RESULTS) -> str:
    def replace(match: re.Match[str]) -> str:
        kind, sources = match["kind"], match["sources"].split()
        return f"<!-- table:{kind} {' '.join(sources)} -->\n{render(kind, sources, folder)}<!-- /table -->"

    return BLOCK.sub(replace, text)


def stale(docs: tuple[Path, ...] = DOCS, folder: Path = RESULTS) -> list[str]:
    """The generated tables that differ from what their results say, as 'file: kind sources'."""
    found = []
    for doc in docs:
        text = doc.read_text()
        for match in BLOCK.finditer(text):
            kind, sources = match["kind"], match["sources"].split()
            if match["body"] != render(kind, sources, folder):
                where = doc.relative_to(REPO) if doc.is_relative_to(REPO) else doc
                found.append(f"{where}: {kind} {' '.join(sources)}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is out of date")
    parser.add_argument("one", nargs="*", metavar="KIND SOURCE", help="print the table of these sources instead")
    args = parser.parse_args()
    if args.one:
        kind, *sources = args.one
        print(render(kind, [str(Path(s).resolve()) if Path(s).is_file() else s for s in sources]), end="")
        return
    if args.check:
        if differing := stale():
            print("out of date (run .venv/bin/python benchmarks/tables.py):", *differing, sep="\n  ", file=sys.stderr)
            raise SystemExit(1)
        print("every generated table matches its stored results")
        return
    for doc in DOCS:
        text = doc.read_text()
        if (new := regenerate(text)) != text:
            doc.write_text(new)
            print(f"rewrote the tables of {doc.relative_to(REPO)}")


if __name__ == "__main__":
    main()
