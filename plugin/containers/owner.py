"""x"""

from __future__ import annotations

import os


def owner_alive(pid_label: str | None) -> bool:
    if not pid_label or not pid_label.isdigit() or int(pid_label) <= 0:
        return False
    try:
        os.kill(int(pid_label), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
