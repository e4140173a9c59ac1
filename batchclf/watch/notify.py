"""The systemd notify protocol (sd_notify): a datagram to ``$NOTIFY_SOCKET``; a no-op without it."""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, address: str | None = None):
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.address = ("\0" + address[1:]) if address.startswith("@") else address  # '@' = abstract namespace
        self._socket = None
        if self.address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, **fields) -> bool:
        """``send(READY=1, STATUS="...")`` -> ``READY=1\\nSTATUS=...``; False if not sent."""
        if not self._socket:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            self._socket.sendto(message, self.address)
            return True
        except OSError:
            return False  # systemd gone (shutdown) or socket not ours: never fatal

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half of ``$WATCHDOG_USEC``, as sd_watchdog_enabled advises."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 2e6

    def close(self) -> None:
        if self._socket:
            self._socket.close()
            self._socket = None
