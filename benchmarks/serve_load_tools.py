"""Plumbing of benchmarks/serve_load.py: the machine, server processes, wrk, a probe client, /metrics.

Everything here runs beside the servers on the same machine; see serve_load.py for what is measured.
"""

import contextlib
import gzip
import http.client
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from service.api.fastpath.tally import FLUSH_INTERVAL_S
from training.settings import TrainingSettings

BOUNDARY = "----imgclsbench7d3f"  # as in the lua scripts
QUIET_LOAD = 0.5  # 1-minute load average above which the figures are not worth keeping
OTHERS_TOLERATED = 0.1  # cores used by other processes during a run, above which the run is flagged
TEST_IMAGES = "t10k-images-idx3-ubyte"
CLK_TCK = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- machine


def busy_cpu_seconds() -> tuple[float, float, float]:
    """CPU seconds all cores spent since boot: in processes (user, nice, system), in interrupts (irq,
    softirq: much of loopback networking) and stolen by the hypervisor for other guests (steal)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system) / CLK_TCK, (irq + softirq) / CLK_TCK, steal / CLK_TCK


def warn_if_busy(load: float) -> None:
    if load > QUIET_LOAD:
        bar = "!" * 100
        log(
            f"{bar}\n!!! WARNING: the 1-minute load average is {load:.2f} (> {QUIET_LOAD}): other processes are "
            "using this machine.\n!!! They take CPU from the servers; the figures below are NOT representative.\n"
            f"{bar}"
        )


def crowded(cpu_cores: dict[str, float]) -> list[str]:
    """Who took more than OTHERS_TOLERATED cores that was neither the measured thing nor the load generator."""
    return [
        f"{who} {cores:.2f} cores"
        for who in ("other processes", "stolen")
        if (cores := cpu_cores.get(who, 0.0)) > OTHERS_TOLERATED
    ]


def warn_if_crowded(what: str, cpu_cores: dict[str, float]) -> None:
    if taken := crowded(cpu_cores):
        log(f"!!! WARNING: during {what}: {', '.join(taken)}: its figures are distorted")


# ------------------------------------------------------------------------------------------------ images


def fashion_mnist_test_images(count: int, first: int = 0) -> np.ndarray:
    """``count`` 28x28 uint8 images of the Fashion-MNIST test set from ``first`` on, read from the folder the
    settings name (IMGCLS_FASHION_MNIST_DIR, training/settings.py), gzipped or not, as training reads it."""
    folder = TrainingSettings().fashion_mnist_dir
    path = next((p for p in (folder / f"{TEST_IMAGES}.gz", folder / TEST_IMAGES) if p.is_file()), None)
    if path is None:
        raise SystemExit(f"{folder}: no {TEST_IMAGES}[.gz]; set IMGCLS_FASHION_MNIST_DIR to the Fashion-MNIST folder")
    with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as handle:
        magic, total, rows, cols = (int(v) for v in np.frombuffer(handle.read(16), ">u4"))
        if magic != 2051 or not 0 <= first <= first + count <= total:
            raise SystemExit(f"{path}: not an IDX image file, or fewer than {first + count} images")
        handle.seek(16 + first * rows * cols)
        return np.frombuffer(handle.read(count * rows * cols), np.uint8).reshape(count, rows, cols)


# -------------------------------------------------------------------------------------------- processes


def _ppid(pid: str) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (parent := _ppid(entry)) is not None:
            children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_cpu_seconds(root: int) -> float:
    total = 0.0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    return total


def tree_rss_mib(root: int) -> dict[int, float]:
    """VmRSS of ``root`` and each descendant, MiB."""
    rss = {}
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss[pid] = int(line.split()[1]) / 1024
    return rss


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def multipart(image: Path, data: bytes) -> tuple[bytes, dict[str, str]]:
    """The same request body as the lua scripts send."""
    ctype = "image/png" if image.suffix == ".png" else "image/jpeg"
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="{image.name}"\r\n'
            f"Content-Type: {ctype}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


@dataclass
class Server:
    """A server process we started, in its own process group, with its log in a file."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    path: str  # the classify endpoint
    lua: Path  # the wrk script that loads it
    log: Path
    launched: float  # time.perf_counter() just before the launch

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, path: str, timeout_s: float) -> tuple[float, float]:
        """Poll ``path`` until it answers 200: (seconds to the first answer, seconds to 200) since launch."""
        first: float | None = None
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.proc.returncode}; {self.log}:\n{self.log_tail()}")
            try:
                status = http_request(self.port, "GET", path)[0]
            except (OSError, http.client.HTTPException):
                status = None
            elapsed = time.perf_counter() - self.launched
            if status is not None and first is None:
                first = elapsed
            if status == 200:
                return first or elapsed, elapsed
            if elapsed > timeout_s:
                raise SystemExit(f"{self.name} not ready after {timeout_s:.0f} s; {self.log}:\n{self.log_tail()}")
            time.sleep(0.01)

    def stop(self, timeout_s: float = 45) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL to the process group if it does not end in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log(f"{self.name}: no exit {timeout_s:.0f} s after SIGTERM; killing its process group")
        for _ in range(50):  # workers left behind by a parent that exited
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def launch(name: str, command: list[str], env: dict[str, str], cwd: Path, log_path: Path, **server: Any) -> Server:
    with log_path.open("wb") as log_file:
        launched = time.perf_counter()
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Server(name=name, proc=proc, log=log_path, launched=launched, **server)


# --------------------------------------------------------------------------------------------------- load


@dataclass
class WrkResult:
    server: str
    connections: int
    duration_s: float
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non200: int
    socket_errors: dict[str, int]
    statuses: dict[int, int] = field(default_factory=dict)  # multipart_status.lua only
    retry_after_missing: int | None = None

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values())


def run_wrk(server: Server, image: Path, connections: int, duration: float, lua: Path, timeout_s: int) -> WrkResult:
    command = ["wrk", "-s", str(lua), "-t2", f"-c{connections}", f"-d{duration:g}s", f"--timeout={timeout_s}s"]
    env = os.environ | {"IMAGE": str(image), "FIELD": "images"}
    run = subprocess.run(
        [*command, server.url], env=env, capture_output=True, text=True, check=False, timeout=duration + timeout_s + 60
    )
    out = run.stdout + run.stderr
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    tail = re.search(r"non200=(\d+) p50_ms=([\d.]+) p99_ms=([\d.]+)", out)
    statuses = re.search(r"statuses=(\S*) retry_after_missing=(\d+) p50_ms=([\d.]+) p99_ms=([\d.]+)", out)
    if run.returncode != 0 or rate is None or total is None or (tail is None and statuses is None):
        raise SystemExit(f"wrk failed (exit {run.returncode}):\n{out}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    names = ("connect", "read", "write", "timeout")
    result = WrkResult(
        server=server.name,
        connections=connections,
        duration_s=float(total[2]) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[total[3]],
        requests=int(total[1]),
        requests_per_s=float(rate[1]),
        p50_ms=0.0,
        p99_ms=0.0,
        non200=0,
        socket_errors=dict(zip(names, (int(v) for v in errors.groups()), strict=True)) if errors else {},
    )
    if tail is not None:
        result.non200, result.p50_ms, result.p99_ms = int(tail[1]), float(tail[2]), float(tail[3])
    else:
        assert statuses is not None
        pairs = (item.split(":") for item in statuses[1].split(",") if item)
        result.statuses = {int(code): int(n) for code, n in pairs}
        result.non200 = sum(n for code, n in result.statuses.items() if code != 200)
        result.retry_after_missing = int(statuses[2])
        result.p50_ms, result.p99_ms = float(statuses[3]), float(statuses[4])
    return result


def measured(run: Callable[[], T], measured_processes: dict[str, list[int]]) -> tuple[T, dict[str, float]]:
    """``run()``, and the busy cores meanwhile by who: each named group of process trees (a server, the
    ceiling's processes), wrk, this process, everything else, interrupts, the hypervisor."""

    def cpu(pids: list[int]) -> float:
        return sum(tree_cpu_seconds(pid) for pid in pids)

    own, busy, started = os.times(), busy_cpu_seconds(), time.perf_counter()
    before = {name: cpu(pids) for name, pids in measured_processes.items()}
    result = run()
    after = {name: cpu(pids) for name, pids in measured_processes.items()}
    own_after, busy_after, elapsed = os.times(), busy_cpu_seconds(), time.perf_counter() - started
    used = {name: after[name] - before[name] for name in before}
    used["wrk"] = own_after.children_user + own_after.children_system - own.children_user - own.children_system
    used["this script"] = own_after.user + own_after.system - own.user - own.system
    used["other processes"] = max(0.0, busy_after[0] - busy[0] - sum(used.values()))
    used["interrupts"] = busy_after[1] - busy[1]
    used["stolen"] = busy_after[2] - busy[2]
    return result, {name: round(max(0.0, seconds) / elapsed, 2) for name, seconds in used.items()}


class Probe(threading.Thread):
    """One keep-alive client posting the image ``rate`` times a second; records each answer's latency."""

    def __init__(self, server: Server, image: Path, data: bytes, rate: float) -> None:
        super().__init__(daemon=True, name="probe")
        self.server, self.interval = server, 1 / rate
        self.body, self.headers = multipart(image, data)
        self.answers: list[tuple[int, float, str | None]] = []  # status, ms, Retry-After
        self.errors = 0
        self.halt = threading.Event()

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
        due = time.perf_counter()
        while not self.halt.is_set():
            started = time.perf_counter()
            try:
                connection.request("POST", self.server.path, body=self.body, headers=self.headers)
                response = connection.getresponse()
                response.read()
                ms = (time.perf_counter() - started) * 1000
                self.answers.append((response.status, ms, response.getheader("Retry-After")))
            except (OSError, http.client.HTTPException):
                self.errors += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
            due += self.interval
            self.halt.wait(max(0.0, due - time.perf_counter()))
        connection.close()

    def summary(self) -> dict[str, Any]:
        accepted = [ms for status, ms, _ in self.answers if status == 200]
        statuses: dict[int, int] = {}
        for status, _, _ in self.answers:
            statuses[status] = statuses.get(status, 0) + 1
        return {
            "requests": len(self.answers),
            "statuses": statuses,
            "errors": self.errors,
            "accepted_p50_ms": round(float(np.percentile(accepted, 50)), 2) if accepted else None,
            "accepted_p99_ms": round(float(np.percentile(accepted, 99)), 2) if accepted else None,
            "retry_after_values": sorted({value for status, _, value in self.answers if status == 503 and value}),
        }


@contextlib.contextmanager
def probing(server: Server, image: Path, data: bytes, rate: float) -> Iterator[Probe]:
    probe = Probe(server, image, data, rate)
    probe.start()
    try:
        yield probe
    finally:
        probe.halt.set()
        probe.join()


# ----------------------------------------------------------------------------------------- our /metrics

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server: Server) -> Samples:
    """Every series of /metrics, once the other workers have flushed their tallies (service/api/fastpath/tally.py)."""
    time.sleep(FLUSH_INTERVAL_S + 0.2)
    status, _, body = http_request(server.port, "GET", "/metrics")
    if status != 200:
        raise SystemExit(f"GET /metrics answered {status}")
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """The change of one series (summed over the label values not given)."""
    total = 0.0
    for (sample, sample_labels), value in after.items():
        if sample == name and labels.items() <= dict(sample_labels).items():
            total += value - before.get((sample, sample_labels), 0.0)
    return total


def average_batch(before: Samples, after: Samples, model: str) -> float | None:
    count = delta(before, after, "imgcls_batch_size_count", model=model)
    return delta(before, after, "imgcls_batch_size_sum", model=model) / count if count else None


def server_p99_ms(before: Samples, after: Samples, model: str) -> float | None:
    """p99 of the classify requests the server answered 200 (its histogram counts only those), linearly
    interpolated inside the bucket, as Prometheus' histogram_quantile does."""
    name = "imgcls_request_duration_seconds_bucket"
    bounds = sorted({float(dict(labels)["le"]) for sample, labels in after if sample == name})
    cumulative = [(le, delta(before, after, name, endpoint="v1_classify", model=model, le=_le(le))) for le in bounds]
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    rank = 0.99 * cumulative[-1][1]
    previous_le, previous_count = 0.0, 0.0
    for le, count in cumulative:
        if count >= rank:
            if math.isinf(le):
                return previous_le * 1000  # above the last finite bucket: that bound is all that is known
            return (previous_le + (le - previous_le) * (rank - previous_count) / (count - previous_count)) * 1000
        previous_le, previous_count = le, count
    return None


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)
