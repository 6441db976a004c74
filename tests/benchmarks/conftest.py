"""The benchmarks are scripts that import their siblings by name (``import record``), as Python does for the
folder of the script it runs: the tests put that folder on the path the same way."""

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))
