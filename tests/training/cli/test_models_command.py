import subprocess
import sys
from pathlib import Path


def test_models_list_does_not_import_torch(tmp_path: Path) -> None:
    """The API image has no torch; `imgcls models ...` must work there."""
    code = (
        "import sys\n"
        "from service.cli import cli\n"
        f"cli.main(['models', 'list', '--model-root', {str(tmp_path)!r}], standalone_mode=False)\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == [f"no models in {tmp_path} (train one with: imgcls train)", "False"]
