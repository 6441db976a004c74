"""Publish a finished run folder into the model repository (``imgcls publish RUN_DIR`` and ``train``).

The run's ``result.json`` says what the manifest says; the repository (service/) stamps the version
and the sha256 of each file and renames the version into place atomically. The first version of a
model also becomes its ``production`` alias (and running servers are told); later ones are promoted
explicitly (``imgcls models promote``), so a new training run never changes what is served by surprise.
"""

from pathlib import Path

from service.files import write_json_atomic
from service.repository import ModelRepository, VersionRef
from service.repository.notify import announce_change, promote
from service.repository.run_folder import RunFolder
from service.repository.store import PRODUCTION


def publish_run(
    run_dir: Path, *, repository_root: Path, name: str | None = None, redis_url: str | None = None
) -> VersionRef:
    """Publish ``run_dir`` as the next version of ``name`` (default: the run's own name); a model's first
    version becomes production. ``redis_url``: where running servers listen for changes (None: they poll).
    Raises ``UnfinishedRun`` for a run that did not complete."""
    folder = RunFolder(run_dir)
    result = folder.read_result()
    name = name or result.name
    repository = ModelRepository(repository_root)
    published = repository.publish(
        result.manifest(name=name, run_dir=run_dir),
        folder.model,
        folder.weights if folder.weights.is_file() else None,
        folder.report if folder.report.is_file() else None,
        folder.explain if result.explain is not None else None,
    )
    if PRODUCTION not in repository.aliases(name):
        promote(repository, name, published.version, redis_url=redis_url)
    else:
        announce_change(redis_url, name)  # a new version to list
    record = {"name": published.name, "version": published.version, "path": str(published.path)}
    write_json_atomic(folder.published, record)
    return published
