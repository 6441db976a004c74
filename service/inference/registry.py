"""Which versions this server process holds, which one serves each model, and hot swaps between them.

Each model has a *serving* version: its ``production`` alias, else its latest version. Requests that name
no version get it. A change (a promotion here, or an alias changed by another process and noticed by
``refresh``) loads and warms the new version beside the old one, flips the serving version, then retires
the old one, which closes once its in-flight requests finish: no request fails during a swap.

The registry loads, swaps and releases versions; it runs none of them. A loaded version's data plane is
its ``Predictor`` (predictor.py), fed by its ``Batcher`` (batcher.py).

Everything here runs on the event loop; session creation and warm-up run in a worker thread.
"""

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from service.inference.batcher import Batcher
from service.inference.errors import ModelNotLoaded, StillLoading, VersionInUse, VersionNotLoaded
from service.inference.predictor import FP32, Predictor, model_file
from service.inference.providers import choose_providers, default_threads
from service.repository import Manifest, ModelRepository, VersionNotFound, notify
from service.repository.store import PRODUCTION

log = logging.getLogger(__name__)

WARMUP_BATCH_SIZES = (1, 8)


@dataclass(frozen=True)
class ServingOptions:
    """What the registry needs to know to load and batch versions (built from the settings at the edge)."""

    max_batch_size: int = 32  # images per onnxruntime call
    max_queue_size: int = 256  # images waiting per version; beyond it, QueueFull
    max_queue_delay_ms: float = 0.0  # extra wait to fill a batch once the runtime is free
    inline_compute_ms: float = 5.0  # batches expected to take this long run on the event loop
    warmup: bool = True  # run a few batches through every session before it serves
    variant: str = FP32  # served unless a request names another; fp32 when a version lacks it
    providers: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when it really works, else CPU
    intra_op_threads: int = 0  # onnxruntime threads per session; 0: cores / workers
    workers: int = 1  # server processes sharing this machine's cores
    default_model: str | None = None  # readiness waits for this one; None: every model found at start-up


@dataclass(eq=False)
class LoadedVersion:
    """A version in memory: its manifest, its predictor, its batcher, and who is using it.

    Requests hold a lease (``in_flight``) while they use it; once retired, it is closed at zero.
    """

    name: str
    version: int
    variant: str
    manifest: Manifest
    predictor: Predictor
    batcher: Batcher
    pinned: bool = False  # loaded by an admin: stays until unloaded, whatever the aliases say
    in_flight: int = 0
    retired: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.name, self.version, self.variant)

    def __str__(self) -> str:
        return f"{self.name} v{self.version} ({self.variant})"

    def retire(self) -> None:
        """No new requests will find it; it closes when the last one in flight finishes."""
        self.retired = True
        if self.in_flight == 0:
            asyncio.get_running_loop().create_task(self.close())

    async def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        await self.batcher.close()
        log.info("released %s", self)


@dataclass(frozen=True)
class ModelStatus:
    name: str
    serving_version: int | None
    aliases: dict[str, int]
    loaded: list[LoadedVersion]


class ModelRegistry:
    def __init__(
        self,
        repository: ModelRepository,
        options: ServingOptions,
        *,
        on_batch: Callable[[LoadedVersion, int, float], None] | None = None,
        on_load: Callable[[LoadedVersion, bool], None] | None = None,
    ) -> None:
        self.repository = repository
        self.options = options
        self.providers = choose_providers(options.providers)
        self.threads = options.intra_op_threads or default_threads(options.workers)
        self._on_batch = on_batch  # (version, batch size, compute seconds), for metrics
        self._on_load = on_load  # (version, loaded: True / released: False), for metrics
        self._loaded: dict[tuple[str, int, str], LoadedVersion] = {}
        self._serving: dict[str, int] = {}
        self._aliases: dict[str, dict[str, int]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._found_at_start: list[str] = []
        self.started = False

    # ---------------------------------------------------------------- requests

    @contextlib.contextmanager
    def lease(
        self, name: str, *, version: int | None = None, alias: str | None = None, variant: str | None = None
    ) -> Iterator[LoadedVersion]:
        """The loaded version a request asked for, held until the request is done with it."""
        loaded = self.find(name, version=version, alias=alias, variant=variant)
        loaded.in_flight += 1
        try:
            yield loaded
        finally:
            loaded.in_flight -= 1
            if loaded.retired and loaded.in_flight == 0:
                asyncio.get_running_loop().create_task(loaded.close())

    def find(
        self, name: str, *, version: int | None = None, alias: str | None = None, variant: str | None = None
    ) -> LoadedVersion:
        if alias is not None:
            cached = self._aliases.get(name, {})
            version = cached[alias] if alias in cached else self.repository.resolve(name, alias)
        elif version is None:
            if name not in self._serving:
                self.repository.versions(name)  # ModelNotFound for a model that does not exist
                if not self.started:  # another worker process may already answer readiness probes
                    raise StillLoading(f"this server process is still loading {name!r}; retry in a moment")
                raise ModelNotLoaded(f"model {name!r} is not loaded on this server (see the server log)")
            version = self._serving[name]
        for candidate in (variant,) if variant else (self.options.variant, FP32):
            loaded = self._loaded.get((name, version, candidate))
            if loaded is not None:
                return loaded
        self.repository.path(name, version)  # VersionNotFound for a version that does not exist
        raise VersionNotLoaded(name, version, variant)

    # ---------------------------------------------------------------- status

    def ready(self) -> tuple[bool, str]:
        """(ready, why not). Ready once start-up finished and the default model(s) serve."""
        if not self.started:
            return False, "loading and warming the models"
        wanted = [self.options.default_model] if self.options.default_model else self._found_at_start
        if not wanted:
            return False, f"no model could be loaded from {self.repository.root} (train one with: imgcls train)"
        missing = [name for name in wanted if name not in self._serving]
        if missing:
            return False, f"the default model {', '.join(missing)} is not loaded (see the server log)"
        return True, "ready"

    def status(self) -> list[ModelStatus]:
        names = sorted({key[0] for key in self._loaded} | set(self._serving))
        return [self.model_status(name) for name in names]

    def model_status(self, name: str) -> ModelStatus:
        loaded = sorted((v for k, v in self._loaded.items() if k[0] == name), key=lambda v: (v.version, v.variant))
        return ModelStatus(name, self._serving.get(name), dict(self._aliases.get(name, {})), loaded)

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Load and warm every model's serving version. A model that fails to load is logged and skipped, and
        keeps the server not ready (unless ``default_model`` names another one)."""
        self._found_at_start = await asyncio.to_thread(self.repository.models)
        await self.refresh()
        self.started = True
        is_ready, reason = self.ready()
        if not is_ready:
            log.warning("not ready: %s", reason)

    async def stop(self) -> None:
        loaded, self._loaded = list(self._loaded.values()), {}
        self._serving.clear()
        await asyncio.gather(*(version.close() for version in loaded))

    async def refresh(self) -> None:
        """Catch up with the repository: new models, and aliases changed by other processes."""
        for name in await asyncio.to_thread(self.repository.models):
            try:
                async with self._lock(name):
                    await self._follow_aliases(name)
            except Exception:  # one broken model must not stop the others from serving
                log.exception("could not bring %s up to date with the repository", name)

    async def promote(
        self,
        name: str,
        version: int,
        alias: str = PRODUCTION,
        *,
        redis_url: str | None,
        by: str | None = None,
        reason: str = "",
    ) -> None:
        """Load and warm ``version`` beside the current one, point ``alias`` at it (recorded in the model's
        history as done by ``by`` for ``reason``; other servers are told through ``redis_url``), then swap if
        it serves."""
        async with self._lock(name):
            await self._ensure_loaded(name, version, self._default_variant(name, version), pinned=False)
            move = functools.partial(notify.promote, alias=alias, redis_url=redis_url, by=by, reason=reason)
            await asyncio.to_thread(move, self.repository, name, version)
            await self._follow_aliases(name)

    async def load(self, name: str, version: int, variant: str | None) -> LoadedVersion:
        """Admin load: the version stays until unloaded, whatever the aliases say."""
        async with self._lock(name):
            loaded = await self._ensure_loaded(name, version, variant or self._default_variant(name, version), True)
            loaded.pinned = True
            return loaded

    async def unload(self, name: str, version: int, variant: str | None) -> list[LoadedVersion]:
        async with self._lock(name):
            self.repository.path(name, version)  # VersionNotFound
            if self._serving.get(name) == version:
                raise VersionInUse(
                    f"{name} v{version} serves the model's default traffic; promote another version first"
                )
            keys = [k for k in self._loaded if k[:2] == (name, version) and variant in (None, k[2])]
            if not keys:
                raise ModelNotLoaded(f"{name} v{version}" + (f" ({variant})" if variant else "") + " is not loaded")
            released = [self._loaded.pop(key) for key in keys]
            for loaded in released:
                self._released(loaded)
            return released

    # ---------------------------------------------------------------- internals

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _default_variant(self, name: str, version: int) -> str:
        wanted = self.options.variant
        if wanted == FP32 or wanted in self.repository.manifest(name, version).variants:
            return wanted
        log.warning("%s v%s has no %s variant; serving fp32", name, version, wanted)
        return FP32

    async def _follow_aliases(self, name: str) -> None:
        aliases = await asyncio.to_thread(self.repository.aliases, name)
        try:
            target = self.repository.resolve(name)
        except VersionNotFound:  # a model folder with no version yet
            return
        self._aliases[name] = aliases
        current = self._serving.get(name)
        if current == target:
            return
        await self._ensure_loaded(name, target, self._default_variant(name, target), pinned=False)
        self._serving[name] = target
        log.info("%s: serving v%s (was %s)", name, target, f"v{current}" if current else "none")
        if current is not None:
            for key in [k for k, v in self._loaded.items() if k[:2] == (name, current) and not v.pinned]:
                self._released(self._loaded.pop(key))

    def _released(self, loaded: LoadedVersion) -> None:
        loaded.retire()
        if self._on_load is not None:
            self._on_load(loaded, False)

    async def _ensure_loaded(self, name: str, version: int, variant: str, pinned: bool) -> LoadedVersion:
        key = (name, version, variant)
        if key in self._loaded:
            return self._loaded[key]
        manifest = await asyncio.to_thread(self.repository.verify, name, version)
        loaded = await asyncio.to_thread(self._build, manifest, variant, pinned)
        loaded.batcher.start()
        self._loaded[key] = loaded
        if self._on_load is not None:
            self._on_load(loaded, True)
        log.info("loaded %s on %s with %d threads", loaded, loaded.predictor.provider, self.threads)
        return loaded

    def _build(self, manifest: Manifest, variant: str, pinned: bool) -> LoadedVersion:
        """Create the session and warm it up (in a worker thread: this takes from milliseconds to seconds)."""
        options = self.options
        onnx_path = model_file(self.repository.path(manifest.name, manifest.version), manifest, variant)
        predictor = Predictor.for_manifest(onnx_path, manifest, providers=self.providers, intra_op_threads=self.threads)
        if options.warmup:
            predictor.warm_up(tuple(sorted({*WARMUP_BATCH_SIZES, options.max_batch_size})))
        batcher = Batcher(
            predictor.predict,
            name=f"{manifest.name}-v{manifest.version}-{variant}",
            max_batch_size=options.max_batch_size,
            max_queue_size=options.max_queue_size,
            max_queue_delay_s=options.max_queue_delay_ms / 1000,
            inline_compute_s=options.inline_compute_ms / 1000,
        )
        loaded = LoadedVersion(manifest.name, manifest.version, variant, manifest, predictor, batcher, pinned=pinned)
        if self._on_batch is not None:
            batcher.on_batch = functools.partial(self._on_batch, loaded)
        return loaded
