"""The CPU a benchmark ran on, in one line: float results and speed differ between CPU kinds (the
developer machines have been an AVX2-only EPYC and AVX-512 ones), so every figure is printed beside it."""

from __future__ import annotations

import os
import platform


def cpu_label() -> str:
    """E.g. ``AMD EPYC (family 25, model 17, AVX-512), 2 cores``, from /proc/cpuinfo (``lscpu``'s source)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        return f"{platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores"
    flags = info.get("flags", "").split()
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    if "amx_bf16" in flags:
        isa += ", AMX bf16"
    return (f"{info.get('model name', 'unknown CPU')} (family {info.get('cpu family', '?')}, "
            f"model {info.get('model', '?')}, {isa}), {os.cpu_count()} cores")
