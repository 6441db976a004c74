import json

from click.testing import CliRunner

from service.api.auth import key_hash
from service.cli import cli
from service.settings import ApiKey


def test_new_key_prints_a_settings_entry_that_matches_the_key() -> None:
    result = CliRunner().invoke(cli, ["api-key", "new", "--name", "ops", "--scope", "admin", "--scope", "classify"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.output.splitlines() if line.startswith(("key", "settings")))
    key = lines["key (shown once)"].strip()
    entry = ApiKey.model_validate(json.loads(lines["settings entry"]))
    assert entry.sha256 == key_hash(key)
    assert entry.scopes == {"admin", "classify"}
