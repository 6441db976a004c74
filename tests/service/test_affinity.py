import os
import subprocess
import sys
from pathlib import Path

import pytest

CLAIM = (
    "import os, sys, time; from pathlib import Path; from service.affinity import claim_core\n"
    "core = claim_core(Path(sys.argv[1])); print(core, sorted(os.sched_getaffinity(0)), flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
)


def claim(slots: Path, hold_s: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CLAIM, str(slots), str(hold_s)], stdout=subprocess.PIPE, text=True)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPU cores")
def test_each_process_claims_its_own_core_and_a_restart_takes_the_free_one(tmp_path: Path) -> None:
    cores = sorted(os.sched_getaffinity(0))
    holders = [claim(tmp_path, 30) for _ in cores]
    try:
        claimed = [holder.stdout.readline().split(" ", 1) for holder in holders if holder.stdout]
        assert sorted(int(core) for core, _ in claimed) == cores  # one core each
        assert all(pinned.strip() == f"[{core}]" for core, pinned in claimed)  # and pinned to it
        extra = subprocess.run([sys.executable, "-c", CLAIM, str(tmp_path), "0"], capture_output=True, text=True)
        assert extra.stdout.startswith("None")  # every core taken: not pinned
        holders[0].kill()
        holders[0].wait()
        restarted = subprocess.run([sys.executable, "-c", CLAIM, str(tmp_path), "0"], capture_output=True, text=True)
        assert restarted.stdout.split(" ", 1)[0] == claimed[0][0]  # the core its predecessor left
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
