import subprocess
import sys


def test_importing_service_does_not_import_torch() -> None:
    code = (
        "import sys, pkgutil, importlib, service\n"
        "for module in pkgutil.walk_packages(service.__path__, 'service.'):\n"
        "    importlib.import_module(module.name)\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", "a module under service/ imports torch"
