"""The containers' HEALTHCHECK (the Dockerfile copies this file into every image).

``healthcheck.py api``: GET http://127.0.0.1:$IMGCLS_PORT/healthz/live answers 200, i.e. the server process
is up and its event loop answers. It says nothing about models (that is /healthz/ready, for traffic).

``healthcheck.py worker``: a Celery worker of *this* container (node name ``...@<this hostname>``, as
``imgcls worker`` names itself) answers a remote-control ping through Redis within a few seconds: the worker's
main process runs, is connected to the broker and its consumer loop answers. It answers while a trial runs
(trials run in child processes). When Redis is unreachable the check fails too: the worker cannot take jobs.

Exit 0: healthy; 1: unhealthy (one line on stderr says why). Standard library only for ``api``; ``worker``
uses the image's Celery and the project's settings (the same broker settings as the worker itself).
"""

import os
import socket
import sys
import urllib.error
import urllib.request

PING_TIMEOUT_S = 3.0


def api() -> str | None:
    url = f"http://127.0.0.1:{os.environ.get('IMGCLS_PORT', '8000')}/healthz/live"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return None if response.status == 200 else f"{url} answered {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"


def worker() -> str | None:
    from celery import Celery

    from service.jobs.queue import celery_config
    from service.settings import JobSettings

    settings = JobSettings()
    if not settings.redis_url:
        return "IMGCLS_REDIS_URL is not set"
    app = Celery("imgcls-healthcheck", set_as_current=False)
    app.conf.update(
        celery_config(redis_url=settings.redis_url, queue=settings.job_queue, max_seconds=settings.job_max_seconds)
    )
    pattern = f"*@{socket.gethostname()}"
    try:
        replies = app.control.ping(timeout=PING_TIMEOUT_S, limit=1, pattern=pattern, matcher="glob")
    except Exception as exc:  # the broker is unreachable: kombu's and redis' errors have no common base
        return f"cannot reach the broker: {type(exc).__name__}: {exc}"
    if not any(name.endswith(pattern[1:]) for reply in replies for name in reply):
        return f"no Celery worker named {pattern} answered a ping within {PING_TIMEOUT_S:g} s"
    return None


def main(argv: list[str]) -> int:
    checks = {"api": api, "worker": worker}
    if len(argv) != 2 or argv[1] not in checks:
        print(f"usage: {argv[0]} {{{','.join(checks)}}}", file=sys.stderr)
        return 2
    problem = checks[argv[1]]()
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
