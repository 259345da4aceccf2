"""The test bed's domain controller as a fault: stopped and started again, or frozen (SIGSTOP) and thawed.

The DC is shared by the whole test session (and, with PTA_AD_TESTBED_DIR, by other runs): whatever happens,
``ensure_running()`` leaves it running and answering, and the scenarios call it in a ``finally``.

Stopping is ``scripts/ad-testbed stop --dir DIR`` (by the pid in DIR/run/samba.pid). Starting it again runs the
very command the script starts it with (``samba -s DIR/etc/smb.conf -D``) on the same directory: the same DC
comes back, with its accounts, objectGUIDs and certificate, as a restarted DC does. (``scripts/ad-testbed start``
on a stopped DC provisions a new domain into a wiped DIR: new objectGUIDs, so every user would come back as a
new person, and a new CA. It is only the last resort of ``ensure_running``.)

Freezing stops every process of the DC (``samba -D`` makes its root process a session leader; the LDAP workers
are in its session and accept connections themselves, so stopping the root alone would freeze nothing).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import ldap3

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "ad_testbed.py"
READY_TIMEOUT_SECONDS = 45.0


class DomainController:
    def __init__(self, ad) -> None:
        self.ad = ad
        self.dir = Path(ad.dir)
        self.pid_file = self.dir / "run" / "samba.pid"
        self.smb_conf = self.dir / "etc" / "smb.conf"
        self.frozen: list[int] = []

    # --- processes ---

    def root_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(self.pid_file.read_text().split()[0])
            return pid if _is_samba(pid) else None
        return None

    def pids(self) -> list[int]:
        """The live samba processes of this DC: its root process's session."""
        root = self.root_pid()
        if root is None:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == root and _is_samba(int(entry.name)):
                    found.append(int(entry.name))
        return found

    # --- faults ---

    def stop(self) -> None:
        result = self._script("stop", timeout=90)
        if result.returncode != 0:
            raise AssertionError(f"scripts/ad-testbed stop failed:\n{result.stdout}{result.stderr}")

    def start(self) -> None:
        """The same DC again (see the module docstring), answering a verified LDAPS bind when this returns."""
        subprocess.run(["samba", "-s", str(self.smb_conf), "-D", "--option=server services=ldap,kdc"],
                       capture_output=True, text=True, timeout=60, check=True)
        self.wait_ready()

    def freeze(self) -> list[int]:
        self.frozen = self.pids()
        if not self.frozen:
            raise AssertionError(f"no DC process to freeze (pid file {self.pid_file})")
        for pid in self.frozen:
            os.kill(pid, signal.SIGSTOP)
        return self.frozen

    def thaw(self) -> None:
        for pid in self.frozen or self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.frozen = []

    # --- state ---

    def answers(self) -> bool:
        """A verified LDAPS connection and the administrator's bind succeed now."""
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=self.ad.ca_file)
        server = ldap3.Server(self.ad.ldaps_url, use_ssl=True, tls=tls, get_info=ldap3.NONE, connect_timeout=2)
        connection = ldap3.Connection(server, user=self.ad.admin_upn, password=self.ad.admin_password.encode(),
                                      receive_timeout=3, raise_exceptions=False)
        try:
            return bool(connection.bind())
        except Exception:  # noqa: BLE001 - any failure means "not answering yet"
            return False
        finally:
            with contextlib.suppress(Exception):
                connection.unbind()

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while not self.answers():
            if time.monotonic() > deadline:
                raise AssertionError(f"the DC in {self.dir} did not answer LDAPS within {timeout} s")
            time.sleep(0.1)

    def ensure_running(self) -> None:
        """Whatever a scenario did: thawed, running, answering (restarted, or as a last resort re-provisioned)."""
        self.thaw()
        for pid in self.pids():  # frozen by someone else's interrupted run?
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if self.root_pid() is not None:
            with contextlib.suppress(AssertionError):
                self.wait_ready(20)
                return
            self.stop()
        if not _port_accepts(636):
            with contextlib.suppress(subprocess.SubprocessError, AssertionError):
                self.start()
                return
        result = self._script("start", "--json", timeout=900)
        if result.returncode != 0:
            raise AssertionError(f"could not bring the DC in {self.dir} back:\n{result.stderr[-2000:]}")

    def _script(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(SCRIPT), args[0], "--dir", str(self.dir), *args[1:]],
                              capture_output=True, text=True, timeout=timeout, check=False)


def _is_samba(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X") and os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "samba"
    except OSError:
        return False


def _port_accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0
