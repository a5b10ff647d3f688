"""What every benchmark table records about where it ran."""
from __future__ import annotations

import datetime
import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe() -> str:
    """Date, CPU, core count, load average and Python: the line each table is printed under."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{datetime.date.today().isoformat()}, {cpu_model()}, nproc={os.cpu_count()}, "
            f"load average {load}, {platform.system()} {platform.release()}, Python {platform.python_version()}")
