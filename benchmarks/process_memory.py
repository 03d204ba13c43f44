"""Resident memory of the current process, from ``/proc/self/status`` (Linux)."""


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def resident_bytes():
    """Resident memory now (VmRSS)."""
    return _status("VmRSS:")


def peak_resident_bytes():
    """Peak resident memory (VmHWM: unlike ``ru_maxrss``, not inherited from
    the parent that forked this process)."""
    return _status("VmHWM:")
