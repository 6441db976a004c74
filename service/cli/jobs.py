"""``imgcls jobs``: a client for the API's fine-tuning jobs: submit a folder or zip, list, watch and cancel.

It talks HTTP only (httpx), so it runs wherever the API can be reached, without torch. The API checks every
value (hyperparameters, names, the dataset); its problem+json answers are printed as ``error: <detail>``,
with exit code 2 for bad input (400, 404, 422) and 1 for the rest.
"""

import contextlib
import json
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import click
import httpx
import msgspec
from tqdm import tqdm

from service.cli.errors import UserError
from service.jobs.hyperparameters import SWEEPABLE
from service.jobs.record import FINISHED, Job, JobEvent, JobPage, JobStatus

DEFAULT_URL = "http://127.0.0.1:8000"
JOBS = "/v1/fine-tuning/jobs"
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
UPLOAD_TIMEOUT = httpx.Timeout(600.0, connect=5.0)  # the API checks and unpacks the zip before it answers
STREAM_TIMEOUT = httpx.Timeout(60.0, connect=5.0)  # the stream sends a keep-alive comment every ~15 s
RECONNECT_PAUSE_S = 1.0
MAX_RECONNECTS = 60  # failed tries in a row before watch gives up
USAGE_STATUSES = frozenset({400, 404, 422})


class ClientError(UserError):
    """A problem shown as one line, ``error: <message>``, without a traceback (exit 1)."""

    retriable = False  # the server is down or busy (unreachable, 503): watch tries again
    retry_after_s = 0.0  # a 503's Retry-After


class BadInput(ClientError):
    """The API refused a value (400, 404, 422): exit 2, like click's own usage errors."""

    exit_code = 2


def problem(answer: httpx.Response) -> ClientError:
    """The API's problem+json ``detail`` (or the body's start) as an error to raise."""
    try:
        body = answer.json()
        detail = str(body.get("detail") or body.get("title")) if isinstance(body, dict) else answer.text
    except ValueError:
        detail = answer.text.strip()[:200] or answer.reason_phrase
    if answer.status_code == 401:
        detail += " (give a key with --api-key or IMGCLS_API_KEY)"
    if retry := answer.headers.get("retry-after"):
        detail += f" (retry after {retry} s)"
    error = (BadInput if answer.status_code in USAGE_STATUSES else ClientError)(detail)
    error.retriable = answer.status_code == 503
    with contextlib.suppress(ValueError):
        error.retry_after_s = float(retry or 0)
    return error


class Api:
    """The API at ``url``, with the key (if any) sent as ``Authorization: Bearer <key>``. The connection is
    made on first use, so a subcommand's --url and --api-key may still change them."""

    def __init__(self, url: str, api_key: str | None) -> None:
        self.url, self.api_key = url, api_key
        self._client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.Client(base_url=self.url.rstrip("/"), headers=headers, timeout=TIMEOUT)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def unreachable(self, error: httpx.TransportError) -> ClientError:
        what = "did not answer in time" if isinstance(error, httpx.TimeoutException) else "cannot be reached"
        unreachable = ClientError(
            f"the imgcls API at {self.url} {what} ({error or type(error).__name__}); "
            "is `imgcls serve` running there? (--url, env IMGCLS_URL)"
        )
        unreachable.retriable = True
        return unreachable

    def call(self, method: str, path: str, **options: Any) -> httpx.Response:
        try:
            answer = self.client.request(method, path, **options)
        except httpx.TransportError as error:
            raise self.unreachable(error) from error
        if answer.is_error:
            raise problem(answer)
        return answer

    def job(self, job_id: str) -> Job:
        return msgspec.json.decode(self.call("GET", f"{JOBS}/{job_id}").content, type=Job)


# ---------------------------------------------------------------- options


def parse_pairs(pairs: tuple[str, ...], option: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint=option)
        values[key] = value
    return values


def parse_base(base: str) -> tuple[str, int | str | None]:
    """``pets`` -> (pets, None: the API picks production, else the latest); ``pets:3``; ``pets:staging``."""
    name, _, version = base.partition(":")
    if not name:
        raise click.BadParameter(f"{base!r} names no model", param_hint="--base")
    return name, (int(version) if version.isascii() and version.isdigit() else version or None)


def hyperparameters(options: dict[str, Any]) -> dict[str, Any]:
    """The options given, by the API's names; a repeatable option given more than once is a sweep (a list)."""
    values: dict[str, Any] = {}
    for name, given in options.items():
        if name in SWEEPABLE:
            if given:
                values[name] = given[0] if len(given) == 1 else list(given)
        elif given is not None:
            values[name] = given
    return values


# ---------------------------------------------------------------- the dataset upload


def zip_folder(folder: Path, target: Path) -> int:
    """Write ``folder``'s files to ``target``, paths relative to it (the class folders at the zip's root)."""
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:  # images are compressed already
        for path in files:
            archive.write(path, path.relative_to(folder).as_posix())
    return len(files)


def upload(api: Api, path: Path) -> dict[str, Any]:
    """POST the zip (or the folder, zipped into a temporary file) to /v1/datasets; the dataset record."""
    if path.is_file() and path.suffix.lower() != ".zip":
        raise click.BadParameter(f"{path} is neither a folder nor a .zip file", param_hint="PATH")
    name = (path.stem if path.is_file() else path.resolve().name)[:100] or None
    with tempfile.TemporaryDirectory(prefix="imgcls-upload-") as scratch:
        archive = path
        if path.is_dir():
            archive = Path(scratch) / "dataset.zip"
            if zip_folder(path, archive) == 0:
                raise click.BadParameter(
                    f"{path} holds no files (expected one sub-folder of images per class)", param_hint="PATH"
                )
        with archive.open("rb") as body:
            answer = api.call(
                "POST",
                "/v1/datasets",
                content=body,
                params={"name": name} if name else {},
                headers={"Content-Type": "application/zip"},
                timeout=UPLOAD_TIMEOUT,
            )
    record: dict[str, Any] = answer.json()
    return record


# ---------------------------------------------------------------- watching: the event stream


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str | None, str, str]]:
    """(id, event type, data) per server-sent event; comments and events without data are left out."""
    event_id: str | None = None
    kind, data = "message", list[str]()
    for line in lines:
        if not line:
            if data and any(data):
                yield event_id, kind, "\n".join(data)
            event_id, kind, data = None, "message", []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "id":
            event_id = value
        elif field == "event":
            kind = value
        elif field == "data":
            data.append(value)


def total_epochs(job: Job) -> int:
    return sum(int(trial.hyperparameters.get("epochs", 0)) for trial in job.trials)


def outcome(job: Job) -> str:
    if job.status == "succeeded" and job.result is not None:
        r = job.result
        accuracy = r.metrics.get("test_accuracy")
        return (
            f"succeeded: published {r.model} v{r.version}"
            + (" (production)" if r.promoted else "")
            + (f", test accuracy {accuracy:.4f}" if accuracy is not None else "")
        )
    return job.status + (f": {job.error.message}" if job.error is not None else "")


class Watcher:
    """Follows one job's event stream to its end; reconnects with Last-Event-ID when it drops."""

    def __init__(self, api: Api, job: Job) -> None:
        self.api, self.job = api, job
        self.last_id: str | None = None
        self.failures = 0  # connections in a row that failed
        self.done: set[tuple[int, int]] = set()  # (trial, epoch): a redelivered trial repeats epochs
        self.bar = tqdm(total=total_epochs(job) or None, unit="epoch", desc=job.id, file=sys.stderr, dynamic_ncols=True)

    def handle(self, event: JobEvent) -> bool:
        """Show one event; True once the job finished."""
        if event.type == "epoch":
            self.done.add((int(event.data.get("trial", 0)), int(event.data.get("epoch", 0))))
            self.bar.update(len(self.done) - self.bar.n)
            if (accuracy := event.data.get("val_accuracy")) is not None:
                self.bar.set_postfix(trial=event.data.get("trial"), val_accuracy=f"{accuracy:.4f}")
            return False
        self.bar.write(event.message, file=sys.stderr)
        return event.type == "status" and event.data.get("status") in FINISHED

    def read_stream(self) -> bool:
        """One connection: True when the job's final status came; False when the stream ended before it."""
        headers = {"Accept": "text/event-stream", **({"Last-Event-ID": self.last_id} if self.last_id else {})}
        with self.api.client.stream(
            "GET", f"{JOBS}/{self.job.id}/events", headers=headers, timeout=STREAM_TIMEOUT
        ) as answer:
            if answer.is_error:
                answer.read()
                raise problem(answer)
            self.failures = 0
            for event_id, kind, data in sse_events(answer.iter_lines()):
                if kind == "unavailable":  # the API lost Redis: it ends the stream, the client comes back
                    self.bar.write(f"{json.loads(data).get('message', data)}; reconnecting", file=sys.stderr)
                    continue
                self.last_id = event_id or self.last_id
                if self.handle(msgspec.json.decode(data, type=JobEvent)):
                    return True
        return False

    def retry(self, error: ClientError, what: str) -> float:
        """Seconds to wait before the next try; raises ``error`` when it is final or too many failed in a row."""
        self.failures += 1
        if not error.retriable or self.failures > MAX_RECONNECTS:
            raise error
        if self.failures == 1:
            self.bar.write(f"{what}; reconnecting", file=sys.stderr)
        return max(RECONNECT_PAUSE_S, error.retry_after_s)

    def follow(self) -> Job:
        """Read events until the job finished; the finished job."""
        while True:
            pause = RECONNECT_PAUSE_S
            try:
                if self.read_stream() or self.api.job(self.job.id).finished:  # or: ended without the last event
                    break
            except httpx.TransportError as error:
                pause = self.retry(self.api.unreachable(error), f"the event stream dropped ({error})")
            except ClientError as error:
                pause = self.retry(error, error.message)
            time.sleep(pause)
        self.bar.close()
        return self.api.job(self.job.id)


def watch_job(api: Api, job_id: str, as_json: bool) -> None:
    """Follow the job to its end; exit 0 when it succeeded, else 1."""
    watcher = Watcher(api, api.job(job_id))
    try:
        job = watcher.follow()
    except KeyboardInterrupt:
        click.echo(f"stopped watching; the job goes on (imgcls jobs watch {job_id} follows it again)", err=True)
        sys.exit(130)
    finally:
        watcher.bar.close()
    click.echo(json.dumps(msgspec.to_builtins(job)) if as_json else f"job {job.id} {outcome(job)}")
    if job.status != "succeeded":
        sys.exit(1)


# ---------------------------------------------------------------- the commands


def table(jobs: list[Job]) -> str:
    def result(job: Job) -> str:
        if job.status in FINISHED:
            return outcome(job).partition(": ")[2][: None if job.status == "succeeded" else 80]
        done = sum(trial.epochs_completed for trial in job.trials)
        return f"{done}/{total_epochs(job)} epochs" if job.status != "queued" else ""

    rows = [("ID", "STATUS", "BASE", "CREATED", "RESULT")] + [
        (
            job.id,
            job.status,
            f"{job.base_model} v{job.base_version}",
            job.created_at[:19].replace("T", " "),
            result(job),
        )
        for job in jobs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)] + [0]  # the last column is not padded
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


URL_HELP = f"The imgcls API [env IMGCLS_URL; default: {DEFAULT_URL}]."
KEY_HELP = "A key with the train scope [env IMGCLS_API_KEY]."


def override(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """A subcommand's --url or --api-key (``imgcls jobs list --url ...``) wins over the group's."""
    if value is not None:
        setattr(ctx.find_object(Api), str(param.name), value)


def connection_options(command: click.Command) -> click.Command:
    for flag, help_text in (("--url", URL_HELP), ("--api-key", KEY_HELP)):
        click.option(flag, expose_value=False, callback=override, help=help_text)(command)
    return command


@click.group("jobs", context_settings={"max_content_width": 110})
@click.option("--url", envvar="IMGCLS_URL", default=DEFAULT_URL, help=URL_HELP)
@click.option("--api-key", envvar="IMGCLS_API_KEY", help=KEY_HELP)
@click.pass_context
def jobs(ctx: click.Context, url: str, api_key: str | None) -> None:
    """Fine-tuning jobs on an imgcls API server: submit a dataset, list, watch and cancel jobs.

    --url and --api-key may follow the subcommand too (imgcls jobs list --url ...).
    """
    ctx.obj = Api(url, api_key)
    ctx.call_on_close(ctx.obj.close)


@connection_options
@jobs.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--base",
    required=True,
    metavar="NAME[:VERSION]",
    help="Published model to start from (VERSION: a number or an alias; default: production).",
)
@click.option("--epochs", type=int, help="Passes over the training images.")
@click.option("--batch-size", type=int, multiple=True, help="Images per update; repeat it to sweep.")
@click.option("--optimizer", multiple=True, help="adamw, sgd, ...; repeat it to sweep.")
@click.option("--learning-rate", type=float, multiple=True, help="The head's peak rate; repeat it to sweep.")
@click.option("--lr-policy", multiple=True, help="cosine, step, onecycle, ...; repeat it to sweep.")
@click.option("--weight-decay", type=float, help="Weight decay.")
@click.option("--freeze-backbone-epochs", type=int, help="First epochs in which only the head learns.")
@click.option("--backbone-lr-multiplier", type=float, help="Backbone rate = learning rate x this, once unfrozen.")
@click.option("--seed", type=int, help="Seeds the splits, the new head and the shuffling.")
@click.option("--validation-split", type=float, help="Share of the training images held out for early stopping.")
@click.option("--auto-promote", is_flag=True, help="Make the new version production (if it passes --min-accuracy).")
@click.option(
    "--shadow",
    is_flag=True,
    help="With --auto-promote: shadow the new version on live traffic first; its gate promotes it (docs/rollouts.md).",
)
@click.option("--min-accuracy", type=float, help="Test accuracy needed for --auto-promote.")
@click.option("--suffix", help="Publish as <base>-<suffix> [default: see docs/api.md].")
@click.option("--metadata", multiple=True, metavar="KEY=VALUE", help="A label for the job; repeatable.")
@click.option("--wait", is_flag=True, help="Then follow the job as `imgcls jobs watch` does.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the job as one JSON object (with --wait, the finished job follows as another).",
)
@click.pass_obj
def submit(
    api: Api,
    path: Path,
    base: str,
    seed: int | None,
    validation_split: float | None,
    auto_promote: bool,
    shadow: bool,
    min_accuracy: float | None,
    suffix: str | None,
    metadata: tuple[str, ...],
    wait: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Upload PATH (an image folder with one sub-folder per class, or a .zip of one) and fine-tune --base on it.

    A repeated --learning-rate, --optimizer, --lr-policy or --batch-size makes a sweep: one trial per
    combination; the best one is published. Prints the job's id and status.
    """
    if shadow and not auto_promote:
        raise click.UsageError("--shadow is a way to --auto-promote: give both")
    model, version = parse_base(base)
    labels = parse_pairs(metadata, "--metadata")
    dataset = upload(api, path)
    skipped = f", {dataset['skipped_count']} skipped" if dataset.get("skipped_count") else ""
    click.echo(
        f"dataset {dataset['id']}: {dataset['files']} images in {len(dataset['classes'])} classes{skipped}", err=True
    )
    body = {
        "base_model": model,
        "dataset": dataset["id"],
        "base_version": version,
        "seed": seed,
        "validation_split": validation_split,
        "hyperparameters": hyperparameters(options),
        "auto_promote": "shadow" if shadow else auto_promote,
        "min_accuracy": min_accuracy,
        "suffix": suffix,
        "metadata": labels,
    }
    try:
        raw = api.call("POST", JOBS, json={key: value for key, value in body.items() if value is not None}).json()
    except BadInput:  # the job was refused: its dataset would be left behind, unused
        with contextlib.suppress(ClientError):
            api.call("DELETE", f"/v1/datasets/{dataset['id']}")
        raise
    job = msgspec.convert(raw, Job)
    if as_json:
        click.echo(json.dumps(raw))
    else:
        trials = f"{len(job.trials)} trials" if len(job.trials) > 1 else "1 trial"
        click.echo(f"job {job.id} {job.status}: {job.base_model} v{job.base_version}, {trials}")
    if wait:
        watch_job(api, job.id, as_json)


@connection_options
@jobs.command("list")
@click.option("--status", type=click.Choice(get_args(JobStatus)), help="Only jobs in this status.")
@click.option("--metadata", multiple=True, metavar="KEY=VALUE", help="Only jobs with this label; repeatable.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Jobs to show at most.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per job (JSON lines).")
@click.pass_obj
def list_jobs(api: Api, status: str | None, metadata: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Jobs, newest first."""
    filters = [f"{key}:{value}" for key, value in parse_pairs(metadata, "--metadata").items()]
    found: list[Job] = []
    cursor: str | None = None
    while len(found) < limit:
        params: dict[str, Any] = {"limit": min(100, limit - len(found)), "metadata": filters}
        params.update({name: value for name, value in (("status", status), ("cursor", cursor)) if value})
        page = msgspec.json.decode(api.call("GET", JOBS, params=params).content, type=JobPage)
        found += page.data
        if (cursor := page.next_cursor) is None:
            break
    if as_json:
        for job in found[:limit]:
            click.echo(json.dumps(msgspec.to_builtins(job)))
    else:
        click.echo(table(found[:limit]))


@connection_options
@jobs.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the finished job as one JSON object.")
@click.pass_obj
def watch(api: Api, job_id: str, as_json: bool) -> None:
    """Follow a job with a progress bar (epochs of all trials) until it ends.

    Exit code 0 when it succeeded (the published model and version are printed), 1 when it failed or was
    cancelled. Ctrl-C stops watching, not the job.
    """
    watch_job(api, job_id, as_json)


@connection_options
@jobs.command()
@click.argument("job_id")
@click.pass_obj
def cancel(api: Api, job_id: str) -> None:
    """Cancel a job: cancelled at once when nothing runs yet, else cancelling until the worker stops."""
    job = msgspec.json.decode(api.call("POST", f"{JOBS}/{job_id}/cancel").content, type=Job)
    click.echo(f"job {job.id} {job.status}")
