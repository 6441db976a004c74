"""What one server process does while a rollout runs: route each classify request (shadow or canary), run
the other version after the answer has been sent, count, write its tally every second, and end the rollout
when the gate says so.

``Rollouts.running`` is empty when no rollout runs: the classify route checks it and nothing else.

The comparison run (the candidate in shadow mode; the serving version behind a canary answer) starts only
once the answer has been written (the route's ``AnswerThen``), so it adds nothing to that answer's latency. It is the
first work dropped under load: past ``max_in_flight`` comparisons in this process, or while the serving
version's queue is more than half full, or when the other version's queue is full, it is skipped and
counted as ``dropped``. Its errors are counted, never shown to anyone; a canary whose candidate fails is
answered by the serving version instead.
"""

import asyncio
import hashlib
import logging
import random
from typing import Any, Literal

from service.imaging import DecodeLimits, ImageError
from service.inference.classify import Classification, classify, prepare
from service.inference.errors import InvalidArgument, ModelNotLoaded, QueueFull, ShuttingDown
from service.inference.registry import LoadedVersion, ModelRegistry
from service.metrics import Metrics
from service.rollouts.figures import Tally
from service.rollouts.plan import Rollout
from service.rollouts.store import MAX_PAIRS_PER_PROCESS

log = logging.getLogger(__name__)

Role = Literal["serving", "candidate"]


class Comparison:
    """One sampled request, answered by one version, waiting to be run on the other."""

    __slots__ = ("answer", "answered", "encoded", "live")

    def __init__(self, live: "LiveRollout", encoded: list[bytes], answered: LoadedVersion, answer: Classification):
        self.live = live
        self.encoded = encoded
        self.answered = answered
        self.answer = answer

    def start(self, prediction_ids: list[str]) -> None:
        """Call once the answer is sent: the other version runs the same images (or the work is dropped)."""
        self.live.compare_later(self, prediction_ids)


class LiveRollout:
    def __init__(
        self,
        plan: Rollout,
        candidate: LoadedVersion,
        registry: ModelRegistry,
        metrics: Metrics,
        limits: DecodeLimits,
        *,
        max_in_flight: int,
        was_pinned: bool,
    ) -> None:
        self.plan = plan
        self.candidate = candidate
        self.registry = registry
        self.metrics = metrics
        self.limits = limits
        self.max_in_flight = max_in_flight
        self.was_pinned = was_pinned  # loaded by an admin before: stays loaded after the rollout
        self.tally = Tally()
        self.pairs: list[str] = []  # lines not yet appended to this process's pairs file
        self.pairs_kept = 0
        self.in_flight = 0
        self.ended = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._cut = plan.percent * 100  # out of 10,000

    # ------------------------------------------------------------------------------------- requests

    def in_sample(self, headers: Any) -> bool:
        """Shadow: a random share. Canary: sticky per client: the X-Request-Id header, else the API key, hashed
        with the rollout's id (a client sees one version during a rollout); random without either."""
        if self._cut >= 10_000:
            return True
        identity = None
        if self.plan.mode == "canary":
            identity = headers.get("x-request-id") or headers.get("authorization") or headers.get("x-api-key")
        if identity is None:
            return random.random() * 10_000 < self._cut
        digest = hashlib.blake2b(f"{self.plan.id}:{identity}".encode(), digest_size=8).digest()
        return int.from_bytes(digest) % 10_000 < self._cut

    async def answer(
        self, headers: Any, encoded: list[bytes], *, top_k: int | None, default_top_k: int, threshold: float
    ) -> tuple[LoadedVersion, Classification, Comparison | None]:
        """Classify ``encoded`` for a request that named no version: the answer, who gave it, and what to
        compare once it is sent (None: not in the sample)."""
        tally, name = self.tally, self.plan.model

        async def run(loaded: LoadedVersion) -> Classification:
            wanted = top_k or min(default_top_k, len(loaded.manifest.labels))
            return await classify(loaded, encoded, limits=self.limits, top_k=wanted, threshold=threshold)

        tally.requests += 1
        if self.ended or not self.in_sample(headers):
            with self.registry.lease(name) as loaded:
                return loaded, await run(loaded), None
        tally.sampled += 1
        if self.plan.mode == "canary":
            candidate = self.candidate
            try:
                with self.registry.lease(name, version=candidate.version, variant=candidate.variant) as loaded:
                    answer = await run(loaded)
                return loaded, answer, Comparison(self, encoded, loaded, answer)
            except (ImageError, InvalidArgument):
                raise  # the request's own fault: the serving version would refuse it too
            except (QueueFull, ShuttingDown, ModelNotLoaded):
                tally.dropped += 1  # busy or leaving: the serving version answers
            except Exception as error:  # the candidate failed: count it, answer with the serving version
                self.failed("candidate", error)
        with self.registry.lease(name) as loaded:
            answer = await run(loaded)
        return loaded, answer, Comparison(self, encoded, loaded, answer) if self.plan.mode == "shadow" else None

    # ---------------------------------------------------------------------------------- comparisons

    def compare_later(self, comparison: Comparison, prediction_ids: list[str]) -> None:
        """Run the other version on the request's images, now that the answer is sent, unless under load."""
        try:
            serving_queue = self.registry.find(self.plan.model).batcher
        except Exception:  # the model is being swapped or unloaded: nothing to compare with
            serving_queue = None
        busy = serving_queue is None or serving_queue.queued_images * 2 > serving_queue.max_queue_size
        if self.ended or busy or self.in_flight >= self.max_in_flight:
            self.dropped()
            return
        self.in_flight += 1
        task = asyncio.get_running_loop().create_task(self._compare(comparison, prediction_ids))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _compare(self, comparison: Comparison, prediction_ids: list[str]) -> None:
        answered, answer = comparison.answered, comparison.answer
        by_candidate = answered is self.candidate or answered.version == self.plan.version
        other_role: Role = "serving" if by_candidate else "candidate"
        try:
            candidate, name = self.candidate, self.plan.model
            lease = (
                self.registry.lease(name)
                if by_candidate
                else self.registry.lease(name, version=candidate.version, variant=candidate.variant)
            )
            with lease as other:
                batch = answer.inputs
                wanted = other.manifest.preprocessing
                if wanted != answered.manifest.preprocessing:
                    batch = await asyncio.to_thread(prepare, comparison.encoded, wanted, self.limits)
                outcome = await other.batcher.submit(batch)
        except (QueueFull, ShuttingDown, ModelNotLoaded):
            self.dropped()
        except Exception as error:
            self.failed(other_role, error)
        else:
            answered_s, other_s = answer.queue_s + answer.compute_s, outcome.queue_s + outcome.compute_s
            if by_candidate:
                self.record(outcome.probabilities, answer.probabilities, other_s, answered_s, prediction_ids)
            else:
                self.record(answer.probabilities, outcome.probabilities, answered_s, other_s, prediction_ids)
        finally:
            self.in_flight -= 1

    def record(self, serving: Any, candidate: Any, serving_s: float, candidate_s: float, ids: list[str]) -> None:
        tops = self.tally.compare(serving, candidate, serving_s, candidate_s)
        m, name = self.metrics, self.plan.model
        agreed = 0
        for (s, c), prediction_id in zip(tops.tolist(), ids, strict=True):
            agreed += s == c
            if self.pairs_kept < MAX_PAIRS_PER_PROCESS:
                self.pairs.append(f"{prediction_id} {s} {c}\n")
                self.pairs_kept += 1
        m.tally.count(m.child(m.rollout_agreed, name), agreed)
        for role, probabilities, seconds in (("serving", serving, serving_s), ("candidate", candidate, candidate_s)):
            m.tally.count(m.child(m.rollout_images, name, role), len(probabilities))
            m.tally.observe(m.child(m.rollout_latency, name, role), seconds)
            confidence = m.child(m.rollout_confidence, name, role)
            for value in probabilities.max(axis=1).tolist():
                m.tally.observe(confidence, value)

    def dropped(self) -> None:
        self.tally.dropped += 1
        self.metrics.tally.count(self.metrics.child(self.metrics.rollout_dropped, self.plan.model))

    def failed(self, role: Role, error: Exception) -> None:
        side = self.tally.candidate if role == "candidate" else self.tally.serving
        side.failures += 1
        side.last_error = f"{type(error).__name__}: {error}"[:300]
        self.metrics.tally.count(self.metrics.child(self.metrics.rollout_failures, self.plan.model, role))
        log.warning("rollout %s of %s: the %s version failed: %s", self.plan.id, self.plan.model, role, side.last_error)

    async def drain(self) -> None:
        """Stop comparing; wait for the comparisons already running."""
        self.ended = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
