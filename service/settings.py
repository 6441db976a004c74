"""Settings read from the environment, all with the ``IMGCLS_`` prefix. Built explicitly, never at import."""

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class RepositorySettings(BaseSettings):
    """Where the model repository lives; shared by the API, the CLI and the workers."""

    model_config = SettingsConfigDict(env_prefix="IMGCLS_", extra="ignore")

    model_root: Path = Path("var/models")  # IMGCLS_MODEL_ROOT: the repository (a shared volume in a cluster)
