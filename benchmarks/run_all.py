"""``make bench``: run every ``benchmarks/bench_*.py`` in turn; each prints its own tables.

    python benchmarks/run_all.py                 # all benchmarks, default settings
    python benchmarks/run_all.py --quick         # a smoke run of each (passes --quick on)
    python benchmarks/run_all.py train data      # only bench_train.py and bench_data.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    flags = [a for a in argv if a.startswith("-")]
    names = [a for a in argv if not a.startswith("-")]
    scripts = sorted(HERE.glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in names]
    failed = []
    for script in scripts:
        print(f"\n==================== {script.name} {' '.join(flags)}", flush=True)
        t = time.time()
        rc = subprocess.call([sys.executable, str(script), *flags])
        print(f"==================== {script.name}: exit {rc}, {time.time() - t:.0f}s", flush=True)
        if rc:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
