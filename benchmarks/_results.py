"""Shared by the benchmark scripts: each owns one section of RESULTS.md and rewrites only it, and
runs each case in a fresh process under a memory cap (the helpers below)."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "cap_memory", "cpu_model", "is_memory_error", "machine_info", "peak_rss_kib", "reset_peak_rss",
    "run_child", "run_groups", "set_threads", "timed", "write_atomic", "write_section",
]

HEADER = (
    "# Benchmarks\n\n"
    "Each section is rewritten by the script that names it; see benchmarks/README.md.\n"
)


def cpu_model() -> str:
    """The CPU's model name from lscpu (the platform's processor string where lscpu is missing)."""
    model = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                      if line.startswith("Model name:")), model)
    except (OSError, subprocess.CalledProcessError):
        pass
    return model


def machine_info(extra: dict[str, str] | None = None) -> dict[str, str]:
    """What a result was measured on: CPU model, cores, Python, torch, the ``extra`` entries (other
    tools' versions, thread counts: label -> value) and measureflow's version."""
    import torch

    import measureflow as mf

    return {"cpu": cpu_model(), "cores": str(os.cpu_count()), "python": platform.python_version(),
            "torch": torch.__version__, **(extra or {}), "measureflow": mf.__version__}


def set_threads(threads: int | None) -> None:
    """torch's intra-op threads (None leaves torch's choice)."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)


def run_groups(groups, run_case: Callable[[str], dict]) -> tuple[dict[str, dict], float, tuple[str, str]]:
    """Run ``run_case(group)`` for each group in order, printing each one's status and time.

    Returns (results by group, whole wall time in seconds, 1-minute load average at start and end).
    """
    wall = time.perf_counter()
    load_start = f"{os.getloadavg()[0]:.2f}"
    results: dict[str, dict] = {}
    for group in groups:
        start = time.perf_counter()
        results[group] = run_case(group)
        status = results[group]["status"]
        print(f"{group:9s} {status} in {time.perf_counter() - start:.0f} s"
              + ("" if status == "ok" else f": {results[group].get('error', '')}"), flush=True)
    return results, time.perf_counter() - wall, (load_start, f"{os.getloadavg()[0]:.2f}")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def write_section(path: Path, name: str, body: str) -> None:
    """Replace the section ``name`` of ``path`` (between its begin/end markers), or append it."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{body.strip()}\n{end}\n"
    text = path.read_text() if path.exists() else HEADER
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    write_atomic(path, text)


# ---------------------------------------------------------------- one case per fresh process


def cap_memory(gigabytes: float) -> None:
    """Cap this process's address space, so a tool that needs more fails with an allocation error."""
    limit = int(gigabytes * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def peak_rss_kib() -> int:
    """This process's peak resident size (VmHWM), in KiB."""
    with open("/proc/self/status") as stream:
        return next(int(line.split()[1]) for line in stream if line.startswith("VmHWM"))


def reset_peak_rss() -> int:
    """Reset VmHWM to the current resident size (so earlier peaks, e.g. imports, do not count);
    returns it, the baseline to subtract from a later :func:`peak_rss_kib`."""
    with open("/proc/self/clear_refs", "w") as stream:
        stream.write("5")
    return peak_rss_kib()


def is_memory_error(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, MemoryError) or "memory" in text or "alloc" in text


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    """``(function(), seconds)``."""
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def run_child(command: list[str], timeout: float) -> dict:
    """Run one case in a fresh process; its last stdout line is the case's JSON result."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "error": f"no result within --timeout {timeout:g} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        status = "out of memory" if is_memory_error(RuntimeError(last)) or done.returncode < 0 else "failed"
        return {"status": status, "error": last[:160]}
    return json.loads(done.stdout.strip().splitlines()[-1])
