"""``Rollouts``: one server process's part in every rollout of the repository.

It starts a rollout (``PUT``: the candidate must load here first), joins one another process started
(``refresh``, on every repository poll or Redis change message, and at start-up: a restart joins again),
writes this process's tally every second and asks the gate (``tick``), and ends a rollout (by hand or by
the gate): the first process to remove ``rollout.json`` records the end in the model's history and, for a
promotion, moves the production alias; every other process notices on its next refresh and lets the
candidate go.
"""

import asyncio
import logging
import time
import uuid
from typing import Literal

import msgspec

from service.feedback import FeedbackStore
from service.imaging import DecodeLimits
from service.inference.registry import LoadedVersion, ModelRegistry
from service.metrics import Metrics
from service.repository import history, notify
from service.rollouts.errors import CandidateRefused, RolloutConflict, RolloutNotFound
from service.rollouts.figures import Figures, figures
from service.rollouts.gate import decide
from service.rollouts.live import LiveRollout
from service.rollouts.plan import Rollout, RolloutRequest, new_rollout
from service.rollouts.store import RolloutStore

log = logging.getLogger(__name__)

Outcome = Literal["promote", "abort"]
GATE = "gate"  # who ends a rollout by its gate, in the history


class Rollouts:
    def __init__(
        self,
        registry: ModelRegistry,
        feedback: FeedbackStore,
        metrics: Metrics,
        limits: DecodeLimits,
        *,
        redis_url: str | None,
        max_in_flight: int = 8,
    ) -> None:
        self.registry = registry
        self.store = RolloutStore(registry.repository)
        self.feedback = feedback
        self.metrics = metrics
        self.limits = limits
        self.redis_url = redis_url
        self.max_in_flight = max_in_flight
        self.process = uuid.uuid4().hex[:12]  # names this process's tally file
        self.running: dict[str, LiveRollout] = {}  # model -> its rollout here; empty: classify pays one check
        self._lock = asyncio.Lock()
        self._written: dict[str, bytes] = {}  # rollout id -> the tally last written (write only changes)

    # ------------------------------------------------------------------------------------------ starting

    async def start(self, name: str, request: RolloutRequest, *, by: str) -> Rollout:
        """Load the candidate here, write the rollout, tell the other servers. Raises ``CandidateRefused``
        (the serving version, one that fails to load, other labels), ``RolloutConflict`` (one is running),
        ``ModelNotFound`` / ``VersionNotFound``."""
        async with self._lock:
            repository = self.registry.repository
            await asyncio.to_thread(repository.path, name, request.version)  # VersionNotFound
            running = await asyncio.to_thread(self.store.current, name)
            if running is not None or name in self.running:
                current = running or self.running[name].plan
                raise RolloutConflict(
                    f"a rollout of {name} v{current.version} is already running ({current.id}): promote or abort it "
                    f"first (POST /v1/models/{name}/rollout/abort)"
                )
            serving = self.registry.model_status(name).serving_version
            if serving is None:
                raise CandidateRefused(f"{name} serves no version on this server yet; retry once it is ready")
            if request.version == serving:
                raise CandidateRefused(
                    f"v{request.version} is the version already serving {name}: a rollout tries another version"
                )
            serving_labels = self.registry.find(name).manifest.labels
            plan = new_rollout(name, serving, request, by=by)
            live = await self._load(plan)
            if live.candidate.manifest.labels != serving_labels:
                await self._release(live)
                raise CandidateRefused(
                    f"{name} v{request.version} has other labels than v{serving}: a rollout compares the same classes"
                )
            try:
                await asyncio.to_thread(self.store.start, plan)
            except BaseException:
                await self._release(live)
                raise
            self.running[name] = live
            event = history.HistoryEvent(
                at=history.now_iso(),
                kind="rollout started",
                alias="production",
                version=plan.version,
                previous=serving,
                by=by,
                reason=plan.reason or f"{plan.mode} at {plan.percent:g} %",
                rollout=plan.id,
            )
            await asyncio.to_thread(history.record, repository, name, event)
            await asyncio.to_thread(notify.announce_change, self.redis_url, name)
            log.info("rollout %s: %s v%s on %s, %s", plan.id, name, plan.version, plan.mode, by)
            return plan

    async def _load(self, plan: Rollout) -> LiveRollout:
        """The candidate, loaded and warmed here (``CandidateRefused`` naming why it cannot be)."""
        was_pinned = any(v.pinned for v in self.registry.model_status(plan.model).loaded if v.version == plan.version)
        try:
            candidate = await self.registry.load(plan.model, plan.version, None)
        except Exception as error:
            raise CandidateRefused(f"{plan.model} v{plan.version} fails to load: {error}") from error
        return LiveRollout(
            plan,
            candidate,
            self.registry,
            self.metrics,
            self.limits,
            max_in_flight=self.max_in_flight,
            was_pinned=was_pinned,
        )

    async def _release(self, live: LiveRollout) -> None:
        """Stop comparing; unload the candidate unless it serves now or an admin had loaded it."""
        await live.drain()
        candidate: LoadedVersion = live.candidate
        if live.was_pinned:
            return
        candidate.pinned = False
        if self.registry.model_status(live.plan.model).serving_version != candidate.version:
            try:
                await self.registry.unload(candidate.name, candidate.version, candidate.variant)
            except Exception as error:  # already gone: nothing to release
                log.info("rollout %s: %s was already released (%s)", live.plan.id, candidate, error)

    # ------------------------------------------------------------------------------ following the files

    async def refresh(self) -> None:
        """Join rollouts other processes started, leave those that ended. Before start-up ends: nothing."""
        if not self.registry.started:
            return
        async with self._lock:
            for name in await asyncio.to_thread(self.registry.repository.models):
                try:
                    await self._follow(name)
                except Exception:  # one model's rollout must not stop the others
                    log.exception("could not follow the rollout of %s", name)

    async def _follow(self, name: str) -> None:
        plan = await asyncio.to_thread(self.store.current, name)
        live = self.running.get(name)
        if live is not None and (plan is None or plan.id != live.plan.id):
            await self._flush(live)
            await self._release(self.running.pop(name))
            live = None
        if plan is None or live is not None:
            return
        try:
            self.running[name] = await self._load(plan)
        except CandidateRefused as error:
            await self._end_unlocked(name, plan, "abort", by=GATE, reason=str(error))

    # ------------------------------------------------------------------------------------------ figures

    async def figures(self, name: str) -> tuple[Rollout, Figures]:
        """The running rollout and its figures from every process (this one's counted up to now)."""
        plan = await asyncio.to_thread(self.store.current, name)
        if plan is None:
            self.registry.repository.versions(name)  # ModelNotFound first
            raise RolloutNotFound(name)
        live = self.running.get(name)
        if live is not None and live.plan.id == plan.id:
            await self._flush(live)
        return plan, await asyncio.to_thread(self._read_figures, plan, True)

    def _read_figures(self, plan: Rollout, with_accuracy: bool) -> Figures:
        tally = self.store.merged_tally(plan.model, plan.id)
        labels = self.registry.repository.manifest(plan.model, plan.version).labels
        accuracy = self._accuracy(plan, labels) if with_accuracy else ((0, 0), (0, 0))
        return figures(
            tally, labels, serving_version=plan.serving_version, candidate_version=plan.version, accuracy=accuracy
        )

    def _accuracy(self, plan: Rollout, labels: tuple[str, ...]) -> tuple[tuple[int, int], tuple[int, int]]:
        """(correct, labelled) of the serving version and of the candidate, on the compared images that have
        feedback (matched by prediction id)."""
        pairs = self.store.pairs(plan.model, plan.id)
        index = {label: i for i, label in enumerate(labels)}
        serving = candidate = labelled = 0
        for item in self.feedback.feedback(plan.model) if pairs else []:
            pair = pairs.get(item.prediction_id or "")
            if pair is None or item.label not in index:
                continue
            labelled += 1
            serving += pair[0] == index[item.label]
            candidate += pair[1] == index[item.label]
        return (serving, labelled), (candidate, labelled)

    async def _flush(self, live: LiveRollout) -> None:
        """Write this process's tally (when it changed) and its new prediction pairs."""
        encoded = msgspec.json.encode(live.tally)
        plan = live.plan
        if self._written.get(plan.id) != encoded:
            await asyncio.to_thread(self.store.write_tally, plan.model, plan.id, self.process, live.tally)
            self._written[plan.id] = encoded
        if live.pairs:
            lines, live.pairs = live.pairs, []
            await asyncio.to_thread(self.store.append_pairs, plan.model, plan.id, self.process, lines)

    async def tick(self) -> None:
        """Every second: write the tallies, and end each rollout the gate (or a failing candidate) decides."""
        for name, live in list(self.running.items()):
            try:
                await self._flush(live)
                found = await asyncio.to_thread(self._read_figures, live.plan, False)
                decision = decide(live.plan, found, time.time())
                if decision is not None:
                    await self.end(name, decision.outcome, by=GATE, reason=decision.reason, rollout_id=live.plan.id)
            except RolloutNotFound:
                pass  # another process ended it first
            except Exception:
                log.exception("rollout of %s: the gate could not be asked", name)

    # ------------------------------------------------------------------------------------------- ending

    async def end(
        self, name: str, outcome: Outcome, *, by: str, reason: str, rollout_id: str | None = None
    ) -> history.HistoryEvent:
        """Promote or abort the running rollout (``rollout_id``: only if it is still that one); the event
        recorded in the model's history. ``RolloutNotFound`` when none runs (or another one does)."""
        async with self._lock:
            plan = await asyncio.to_thread(self.store.current, name)
            if plan is None or (rollout_id is not None and plan.id != rollout_id):
                self.registry.repository.versions(name)  # ModelNotFound first
                raise RolloutNotFound(name)
            return await self._end_unlocked(name, plan, outcome, by=by, reason=reason)

    async def _end_unlocked(
        self, name: str, plan: Rollout, outcome: Outcome, *, by: str, reason: str
    ) -> history.HistoryEvent:
        live = self.running.get(name)
        if live is not None and live.plan.id == plan.id:
            await live.drain()
            await self._flush(live)
        final = await asyncio.to_thread(self._read_figures, plan, True)
        if await asyncio.to_thread(self.store.claim_end, name, plan.id) is None:
            raise RolloutNotFound(name)
        event = history.HistoryEvent(
            at=history.now_iso(),
            kind="rollout promoted" if outcome == "promote" else "rollout aborted",
            alias="production",
            version=plan.version,
            previous=plan.serving_version,
            by=by,
            reason=reason,
            rollout=plan.id,
            figures=msgspec.to_builtins(final),
        )
        await asyncio.to_thread(history.record, self.registry.repository, name, event)
        log.info("rollout %s of %s v%s: %s by %s: %s", plan.id, name, plan.version, outcome, by, reason)
        if outcome == "promote":
            await self.registry.promote(
                name, plan.version, redis_url=self.redis_url, by=by, reason=f"rollout {plan.id}: {reason}"
            )
        else:
            await asyncio.to_thread(notify.announce_change, self.redis_url, name)
        if live is not None and self.running.get(name) is live:
            del self.running[name]
            await self._release(live)
        self._written.pop(plan.id, None)
        return event

    async def stop(self) -> None:
        """At shutdown: write every tally once more (the rollouts go on in the repository)."""
        for live in list(self.running.values()):
            await live.drain()
            await self._flush(live)
