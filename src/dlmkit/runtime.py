"""Process-wide compute settings the ``dlm`` commands apply: CPU threads and the network's precision.

Threads: torch's own default is every logical CPU, which oversubscribes a loaded or
hyper-threaded machine (one measured step took 10-14 s that way against 3 s on one thread in the
same minute); dlmkit uses ``OMP_NUM_THREADS`` when set, else the physical cores it may run on.

Precision: on CUDA the network runs under bf16 autocast while sampling, scoring and timing, as the
reference SEDD and MDLM samplers do; everything the samplers compute from its output (scores,
probabilities, the categorical draws) stays in float32/float64, since autocast never casts float64
tensors and the kinds cast the network's output to float32.  ``--no-autocast`` turns it off.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from dlmkit.errors import DlmError

_AUTOCAST = {"enabled": True}


def physical_cores() -> int:
    """Physical cores among the CPUs this process may use (logical CPUs when the topology is unknown)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    siblings = set()
    for cpu in cpus:
        path = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            siblings.add(path.read_text().strip())
        except OSError:
            return max(1, len(cpus))
    return max(1, len(siblings))


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when it holds a positive integer, else :func:`physical_cores`."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return physical_cores()


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads to ``n`` (default :func:`default_threads`); returns the number set."""
    n = default_threads() if n is None else n
    if n < 1:
        raise DlmError(f"--threads must be at least 1, got {n}")
    torch.set_num_threads(n)
    return n


def set_network_autocast(enabled: bool) -> None:
    """Turn bf16 autocast of the network on CUDA on (the default) or off for this process."""
    _AUTOCAST["enabled"] = bool(enabled)


def network_autocast(device: torch.device | str) -> contextlib.AbstractContextManager:
    """bf16 autocast on a CUDA device that supports it (unless turned off); a no-op elsewhere."""
    device = torch.device(device)
    if _AUTOCAST["enabled"] and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_device(device: str | None) -> torch.device:
    """``device`` or, when unset, CUDA if present else the CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_cache_dir() -> Path:
    """Where dlmkit caches tokenised data and converted models: ``DLM_CACHE``, else ``~/.cache/dlmkit``."""
    return Path(os.environ.get("DLM_CACHE", Path.home() / ".cache" / "dlmkit"))
