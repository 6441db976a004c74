"""Which versions this server process holds, which one serves each model, and hot swaps between them.

Each model has a *serving* version: its ``production`` alias, else its latest version. Requests that name
no version get it. A change (a promotion here, or an alias changed by another process and noticed by
``refresh``) loads and warms the new version beside the old one, flips the serving version, then retires
the old one, which closes once its in-flight requests finish: no request fails during a swap.

Everything here runs on the event loop; session creation and warm-up run in a worker thread.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from service.inference.batcher import Batcher
from service.inference.errors import ModelNotLoaded, StillLoading, VersionInUse
from service.inference.loaded import FP32, LoadedVersion, calibrated_probabilities, model_file
from service.inference.providers import choose_providers, default_threads
from service.inference.runtime import Runtime
from service.repository import Manifest, ModelRepository, VersionNotFound
from service.repository.store import PRODUCTION
from service.settings import ServiceSettings

log = logging.getLogger(__name__)

WARMUP_BATCH_SIZES = (1, 8)


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
        settings: ServiceSettings,
        *,
        on_batch: Callable[[LoadedVersion, int, float], None] | None = None,
        on_load: Callable[[LoadedVersion, bool], None] | None = None,
    ) -> None:
        self.repository = repository
        self.settings = settings
        self.providers = choose_providers(settings.providers)
        self.threads = settings.intra_op_threads or default_threads(settings.workers)
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
        loaded.acquire()
        try:
            yield loaded
        finally:
            loaded.release()

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
        for candidate in (variant,) if variant else (self.settings.variant, FP32):
            loaded = self._loaded.get((name, version, candidate))
            if loaded is not None:
                return loaded
        self.repository.path(name, version)  # VersionNotFound for a version that does not exist
        what = f"{name} v{version}" + (f" ({variant})" if variant else "")
        raise ModelNotLoaded(
            f"{what} is not loaded on this server; load it with POST /v1/models/{name}/versions/{version}/load"
            + (f"?variant={variant}" if variant else "")
        )

    # ---------------------------------------------------------------- status

    def ready(self) -> tuple[bool, str]:
        """(ready, why not). Ready once start-up finished and the default model(s) serve."""
        if not self.started:
            return False, "loading and warming the models"
        wanted = [self.settings.default_model] if self.settings.default_model else self._found_at_start
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
        keeps the server not ready (unless IMGCLS_DEFAULT_MODEL names another one)."""
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

    async def promote(self, name: str, version: int, alias: str = PRODUCTION) -> None:
        """Load and warm ``version`` beside the current one, point ``alias`` at it, then swap if it serves."""
        async with self._lock(name):
            await self._ensure_loaded(name, version, self._default_variant(name, version), pinned=False)
            await asyncio.to_thread(self.repository.set_alias, name, alias, version)
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
        wanted = self.settings.variant
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
        log.info("loaded %s on %s with %d threads", loaded, loaded.runtime.provider, self.threads)
        return loaded

    def _build(self, manifest: Manifest, variant: str, pinned: bool) -> LoadedVersion:
        """Create the session and warm it up (in a worker thread: this takes from milliseconds to seconds)."""
        onnx_path = model_file(self.repository.path(manifest.name, manifest.version), manifest, variant)
        runtime = Runtime(onnx_path, providers=self.providers, intra_op_threads=self.threads)
        sample_shape = tuple(manifest.input.shape[1:])
        if self.settings.warmup:
            runtime.warm_up(sample_shape, tuple(sorted({*WARMUP_BATCH_SIZES, self.settings.max_batch_size})))
        temperature = manifest.temperature

        def infer(images: np.ndarray) -> np.ndarray:
            return calibrated_probabilities(runtime.run(images), temperature)

        batcher = Batcher(
            infer,
            name=f"{manifest.name}-v{manifest.version}-{variant}",
            max_batch_size=self.settings.max_batch_size,
            max_queue_size=self.settings.max_queue_size,
            max_queue_delay_s=self.settings.max_queue_delay_ms / 1000,
            inline_compute_s=self.settings.inline_compute_ms / 1000,
        )
        loaded = LoadedVersion(manifest.name, manifest.version, variant, manifest, runtime, batcher, pinned=pinned)
        if (report := self._on_batch) is not None:
            batcher.on_batch = lambda size, seconds: report(loaded, size, seconds)
        return loaded
