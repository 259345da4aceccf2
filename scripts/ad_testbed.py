"""A throwaway Active Directory (Samba AD DC) on loopback, with users in every bind state.

    scripts/ad-testbed start --dir DIR [--host 127.0.0.N] [--json]
                                                  provision, start and populate a DC in DIR
    scripts/ad-testbed stop  --dir DIR            stop the DC whose pid is in DIR/run/samba.pid
    scripts/ad-testbed facts --dir DIR            print DIR/facts.json

The DC listens on one loopback address only (LDAP 389, LDAPS 636, Kerberos 88): 127.0.0.1, or another of
127.0.0.0/8 given by `start --host` (the ports are fixed, so one DC runs per address and network namespace: a
test run's parallel workers each start theirs on an address of its own). LDAPS presents a certificate issued
by this script's own CA (DIR/tls/ca.pem) for that address, localhost and dc.corp.example.test. `start` on a DIR
whose DC runs just prints its facts.

Needs Python 3 with cryptography and ldap3, and Debian's samba packages (installed when missing).
"""

import argparse
import concurrent.futures
import contextlib
import datetime
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import ldap3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REALM = "CORP.EXAMPLE.TEST"
NETBIOS_DOMAIN = "CORP"
UPN_SUFFIX = "corp.example.test"
MAIL_DOMAIN = "mail.corp.example.test"
BASE_DN = "DC=corp,DC=example,DC=test"
USERS_DN = f"CN=Users,{BASE_DN}"
DC_DNS_NAME = "dc.corp.example.test"
HOST = "127.0.0.1"  # start --host changes it (use_host)
LDAP_PORT = 389
LDAPS_PORT = 636
KERBEROS_PORT = 88
LDAP_URL = f"ldap://{HOST}:{LDAP_PORT}"
LDAPS_URL = f"ldaps://{HOST}:{LDAPS_PORT}"


def use_host(host):
    """The loopback address the DC listens on, and so its URLs and its certificate's address."""
    global HOST, LDAP_URL, LDAPS_URL
    if not ipaddress.ip_address(host).is_loopback:
        raise TestbedError(f"--host {host}: the DC listens on loopback only (127.0.0.0/8)")
    HOST, LDAP_URL, LDAPS_URL = host, f"ldap://{host}:{LDAP_PORT}", f"ldaps://{host}:{LDAPS_PORT}"
ADMIN_UPN = f"Administrator@{UPN_SUFFIX}"
ADMIN_PASSWORD = "Adm1n!Testbed-Pa55"  # a throwaway DC on loopback

LOCKOUT_THRESHOLD = 10
LOCKOUT_DURATION_MINUTES = 30
LOCKOUT_RESET_AFTER_MINUTES = 1
MAX_PASSWORD_AGE_DAYS = 30
EXPIRED_PASSWORD_AGE_DAYS = 40  # older than MAX_PASSWORD_AGE_DAYS

DEBIAN_PACKAGES = ["samba", "samba-ad-dc", "samba-ad-provision", "winbind", "ldb-tools", "faketime"]
REQUIRED_COMMANDS = ["samba", "samba-tool", "faketime", "ldbmodify"]
# samba-ad-provision holds the AD schema that `samba-tool domain provision` reads; nothing on PATH shows it.
PROVISION_SCHEMA = Path("/usr/share/samba/setup/ad-schema")
PID_FILE_TIMEOUT_SECONDS = 15
LDAPS_READY_TIMEOUT_SECONDS = 45
STOP_TIMEOUT_SECONDS = 15

# userAccountControl flags
UF_ACCOUNTDISABLE = 0x0002
UF_NORMAL_ACCOUNT = 0x0200
UF_DONT_EXPIRE_PASSWD = 0x10000

DATA_CODE_RE = re.compile(r"\bdata ([0-9a-f]+)\b")


class UserSpec(NamedTuple):
    sam: str
    given: str
    surname: str
    password: str
    state: str
    expected: str  # bind answer: "success", or AD's `data` sub-code

    @property
    def upn(self):
        return f"{self.sam}@{UPN_SUFFIX}"

    @property
    def display_name(self):
        return f"{self.given} {self.surname}"

    @property
    def dn(self):
        return f"CN={self.display_name},{USERS_DN}"

    @property
    def mail(self):
        return f"{self.given.lower()}.{self.surname.lower().replace('ü', 'ue')}@{MAIL_DOMAIN}"


# No password may contain its user's name (the default complexity policy rejects that). ivan's and
# judy's passwords exercise spaces, quotes and non-ASCII characters.
USERS = [
    UserSpec("alice", "Alice", "Smith", "Wonder!Land-2024", "good", "success"),
    UserSpec("bob", "Bob", "Jones", "Bu1lder#Can-Fix", "good", "success"),
    UserSpec("ivan", "Ivan", "Petrov", 'Sp@ce and "quotes" 7', "good", "success"),
    UserSpec("judy", "Judy", "Müller", "Grüße-Straße!9", "good", "success"),
    UserSpec("mallory", "Mallory", "Evil", "Man!In-The-M1ddle", "good", "success"),
    UserSpec("carol", "Carol", "White", "Chr1stmas!Song", "disabled", "533"),
    UserSpec("dave", "Dave", "Brown", "Expired!Acct-42", "account_expired", "701"),
    UserSpec("erin", "Erin", "Green", "Change!Me-N0w", "must_change_password", "773"),
    UserSpec("frank", "Frank", "Black", "0ld!Passw0rd-40d", "password_expired", "532"),
    UserSpec("grace", "Grace", "Hopper", "C0bol!Night-Shift", "logon_hours", "530"),
    UserSpec("heidi", "Heidi", "Klum", "L0cked!Out-Tight", "locked_out", "775"),
]
SERVICE_ACCOUNT = UserSpec("pta-svc", "PTA", "Service", "Svc!Search-Acc0unt", "service", "success")
UNKNOWN_USER_UPN = f"nobody@{UPN_SUFFIX}"


def user_in_state(state):
    return next(spec for spec in USERS if spec.state == state)


class TestbedError(Exception):
    """A failure with a message meant for a person; the CLI prints it and exits 1."""


def progress(message):
    print(f"[ad-testbed] {message}", file=sys.stderr, flush=True)


class PhaseTimer:
    def __init__(self):
        self.started = time.monotonic()
        self.phases = {}

    @contextlib.contextmanager
    def phase(self, name):
        progress(f"{name} …")
        t0 = time.monotonic()
        yield
        self.phases[name] = round(time.monotonic() - t0, 2)
        progress(f"{name}: {self.phases[name]:.2f} s")

    def total(self):
        return round(time.monotonic() - self.started, 2)


class Paths:
    def __init__(self, root):
        self.root = Path(root).resolve()
        self.marker = self.root / ".ad-testbed"
        self.facts = self.root / "facts.json"
        self.smb_conf = self.root / "etc" / "smb.conf"
        self.run = self.root / "run"
        self.pid_file = self.run / "samba.pid"
        self.log_dir = self.root / "log"
        self.log_file = self.log_dir / "samba.log"
        self.tls = self.root / "tls"
        self.ca_cert = self.tls / "ca.pem"
        self.server_cert = self.tls / "server.pem"
        self.server_key = self.tls / "server-key.pem"


# --- processes and ports ----------------------------------------------------------------------


def run(cmd, *, env=None, timeout=120):
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-3000:]
        raise TestbedError(f"command failed ({result.returncode}): {' '.join(cmd)}\n{output}")
    return result.stdout


def pid_is_samba(pid):
    """True if pid is a live samba process (not a zombie, not a stranger that reused a stale pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        executable = os.readlink(f"/proc/{pid}/exe")  # not argv: samba rewrites it ("samba: root process")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and os.path.basename(executable) == "samba"


def read_pid(paths):
    try:
        return int(paths.pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def running_pid(paths):
    pid = read_pid(paths)
    return pid if pid is not None and pid_is_samba(pid) else None


def port_accepts(port, timeout=0.3):
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_ports_free():
    for port in (LDAPS_PORT, LDAP_PORT, KERBEROS_PORT):
        if port_accepts(port):
            raise TestbedError(
                f"{HOST}:{port} is already taken by another process, and the DC needs it (the ports are "
                f"fixed). See who holds it: ss -ltnp 'sport = :{port}'. If it is an older testbed, stop "
                f"it: scripts/ad-testbed stop --dir ITS_DIR"
            )


def log_tail(paths, lines=30):
    try:
        text = paths.log_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {paths.log_file})"
    return "\n".join(text.splitlines()[-lines:])


def _missing():
    missing = [cmd for cmd in REQUIRED_COMMANDS if shutil.which(cmd) is None]
    return missing + ([] if PROVISION_SCHEMA.is_dir() else [str(PROVISION_SCHEMA)])


def ensure_packages():
    missing = _missing()
    if not missing:
        return
    if os.geteuid() != 0:
        raise TestbedError(f"missing {', '.join(missing)}: as root, apt-get install {' '.join(DEBIAN_PACKAGES)}")
    progress(f"missing {', '.join(missing)}: installing {' '.join(DEBIAN_PACKAGES)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update"], env=env, timeout=600)
    run(["apt-get", "install", "-y", *DEBIAN_PACKAGES], env=env, timeout=900)
    still_missing = _missing()
    if still_missing:
        raise TestbedError(f"still missing after apt-get install: {', '.join(still_missing)}")


# --- TLS --------------------------------------------------------------------------------------


def _key_usage(*, cert_sign):
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=not cert_sign,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def make_tls(paths):
    """Our own CA and a server certificate for the DC's address, so clients verify without /etc/hosts edits."""
    paths.tls.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - datetime.timedelta(days=1), now + datetime.timedelta(days=365)

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AD testbed CA (throwaway)")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder(subject_name=ca_name, issuer_name=ca_name, not_valid_before=not_before,
                                not_valid_after=not_after)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DC_DNS_NAME)])
    alt_names = [
        # 127.0.0.1 as well: a test's relay on 127.0.0.1 reaches a DC that listens on another loopback address.
        *{x509.IPAddress(ipaddress.ip_address(HOST)), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))},
        x509.DNSName("localhost"),
        x509.DNSName(DC_DNS_NAME),
    ]
    server_cert = (
        x509.CertificateBuilder(subject_name=server_name, issuer_name=ca_name, not_valid_before=not_before,
                                not_valid_after=not_after)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    paths.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    # Samba refuses a key file that others may read: create it 0600 rather than chmod it afterwards.
    with os.fdopen(os.open(paths.server_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
        fh.write(key_pem)


# --- provisioning and the daemon --------------------------------------------------------------


def prepare_dir(paths):
    """Make DIR empty, refusing to wipe a folder that this script did not make."""
    if paths.root.exists() and any(paths.root.iterdir()):
        if not paths.marker.exists():
            raise TestbedError(f"{paths.root} is not empty and holds no testbed: give an empty or new --dir")
        progress(f"wiping the stopped testbed in {paths.root}")
        for child in paths.root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.marker.write_text("made by scripts/ad-testbed; safe to delete once the DC is stopped\n")
    paths.run.mkdir()
    paths.log_dir.mkdir()


def provision(paths):
    options = {
        "interfaces": f"{HOST}/8",
        "bind interfaces only": "yes",
        "pid directory": paths.run,
        "log file": paths.log_file,
        "tls enabled": "yes",
        "tls keyfile": paths.server_key,
        "tls certfile": paths.server_cert,
        "tls cafile": paths.ca_cert,
    }
    run(
        [
            "samba-tool", "domain", "provision",
            f"--targetdir={paths.root}",
            f"--realm={REALM}",
            f"--domain={NETBIOS_DOMAIN}",
            "--server-role=dc",
            "--dns-backend=NONE",
            f"--adminpass={ADMIN_PASSWORD}",
            *(f"--option={name}={value}" for name, value in options.items()),
        ]
    )  # fmt: skip


# Samba accepts a user's previous password for 60 minutes after a change, for LDAP simple binds as for NTLM;
# 0 makes a change take effect at once. Provisioning does not write this option, so it is added afterwards.
SMB_CONF_EXTRA = {"old password allowed period": "0"}


def add_global_options(paths):
    text = paths.smb_conf.read_text()
    lines = "".join(f"\t{name} = {value}\n" for name, value in SMB_CONF_EXTRA.items())
    paths.smb_conf.write_text(text.replace("[global]\n", "[global]\n" + lines, 1))


def create_expired_password_user_offline(paths, spec):
    """pwdLastSet can only be written as 0 or -1, so the user is made 40 days ago, as far as samba-tool
    knows: under faketime, straight into sam.ldb (no running DC needed)."""
    run(
        [
            "faketime", f"-{EXPIRED_PASSWORD_AGE_DAYS} days",
            "samba-tool", "user", "create", spec.sam, spec.password,
            f"--given-name={spec.given}",
            f"--surname={spec.surname}",
            f"--mail-address={spec.mail}",
            "-s", str(paths.smb_conf),
        ]
    )  # fmt: skip


def start_samba(paths):
    run(["samba", "-s", str(paths.smb_conf), "-D", "--option=server services=ldap,kdc"])


def wait_for_ldaps(paths):
    """Wait until LDAPS takes a verified Administrator bind; fail early if samba dies or never starts."""
    started = time.monotonic()
    last_error = "port closed"
    seen_pid = None
    while time.monotonic() - started < LDAPS_READY_TIMEOUT_SECONDS:
        pid = running_pid(paths)
        if pid is None and seen_pid is not None:
            raise TestbedError(
                f"samba (pid {seen_pid}) exited while starting. Tail of {paths.log_file}:\n{log_tail(paths)}"
            )
        if pid is None and time.monotonic() - started > PID_FILE_TIMEOUT_SECONDS:
            raise TestbedError(
                f"samba wrote no live pid to {paths.pid_file}. Tail of {paths.log_file}:\n{log_tail(paths)}"
            )
        seen_pid = pid or seen_pid
        if port_accepts(LDAPS_PORT):
            try:
                admin_connection(paths).unbind()
                return
            except Exception as exc:  # noqa: BLE001 - retried until the deadline, then reported
                last_error = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    raise TestbedError(
        f"LDAPS on {HOST}:{LDAPS_PORT} took no verified bind within {LDAPS_READY_TIMEOUT_SECONDS} s "
        f"(last error: {last_error}). Tail of {paths.log_file}:\n{log_tail(paths)}"
    )


def dc_processes(session_id):
    """The live samba processes of one DC: `samba -D` makes its root process a session leader, and its
    workers stay in that session (they can outlive a root process that failed to start)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # not a process, or gone meanwhile
        if int(fields[3]) == session_id and pid_is_samba(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def stop_dc(paths):
    """Stop the DC by the pid in its pid file (never by name); return what happened."""
    pid = read_pid(paths)
    pids = dc_processes(pid) if pid is not None else []
    if not pids:
        return f"no DC running in {paths.root} (pid file {paths.pid_file}: {pid or 'absent'})"
    # The root process stops its workers; only when it is already gone are they signalled one by one.
    for target in [pid] if pid in pids else pids:
        os.kill(target, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline and any(pid_is_samba(p) for p in pids):
        time.sleep(0.1)
    killed = [p for p in pids if pid_is_samba(p)]
    for target in killed:
        os.kill(target, signal.SIGKILL)
    how = f"SIGKILL to {killed} after SIGTERM timed out" if killed else "SIGTERM"
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline and port_accepts(LDAPS_PORT):
        time.sleep(0.1)
    still_open = f"; warning: {HOST}:{LDAPS_PORT} still accepts connections" if port_accepts(LDAPS_PORT) else ""
    return f"stopped the DC in {paths.root} (pid {pid}, {how}){still_open}"


# --- LDAP -------------------------------------------------------------------------------------


def ldaps_connection(paths, user, password):
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(paths.ca_cert))
    # get_info=NONE: no schema download, and no ldap3 schema checks (they reject AD's negative intervals).
    server = ldap3.Server(HOST, port=LDAPS_PORT, use_ssl=True, tls=tls, get_info=ldap3.NONE, connect_timeout=5)
    return ldap3.Connection(server, user=user, password=password.encode("utf-8"), receive_timeout=10)


def admin_connection(paths):
    conn = ldaps_connection(paths, ADMIN_UPN, ADMIN_PASSWORD)
    if not conn.bind():
        raise TestbedError(f"Administrator bind failed: {conn.result}")
    return conn


def bind_answer(conn, user, password):
    """'success', or AD's `data` sub-code (e.g. '52e'), of a simple bind on an open connection."""
    conn.user = user
    conn.password = password.encode("utf-8")
    if conn.bind():
        return "success"
    match = DATA_CODE_RE.search(conn.result.get("message") or "")
    return match.group(1) if match else f"{conn.result.get('description')}: {conn.result.get('message')}"


def check(conn, ok, what):
    if not ok:
        raise TestbedError(f"{what} failed: {conn.result}")


def filetime(when):
    """AD's FILETIME: 100 ns intervals since 1601-01-01 UTC."""
    return int((when - datetime.datetime(1601, 1, 1, tzinfo=datetime.UTC)).total_seconds()) * 10_000_000


def ad_interval(minutes):
    """AD stores durations as negative counts of 100 ns."""
    return str(-int(minutes * 60 * 10_000_000))


def set_domain_policy(conn):
    # AD requires lockoutDuration >= lockOutObservationWindow: 30 min >= 1 min.
    policy = {
        "lockoutThreshold": str(LOCKOUT_THRESHOLD),
        "lockoutDuration": ad_interval(LOCKOUT_DURATION_MINUTES),
        "lockOutObservationWindow": ad_interval(LOCKOUT_RESET_AFTER_MINUTES),
        "maxPwdAge": ad_interval(MAX_PASSWORD_AGE_DAYS * 24 * 60),
    }
    changes = {name: [(ldap3.MODIFY_REPLACE, [value])] for name, value in policy.items()}
    check(conn, conn.modify(BASE_DN, changes), "setting the domain's password and lockout policy")


def add_user(conn, spec, *, uac=UF_NORMAL_ACCOUNT, extra=None):
    attributes = {
        "sAMAccountName": spec.sam,
        "userPrincipalName": spec.upn,
        "givenName": spec.given,
        "sn": spec.surname,
        "displayName": spec.display_name,
        "mail": spec.mail,
        # AD takes a new password only as the quoted string in UTF-16LE, and only over an encrypted link.
        "unicodePwd": f'"{spec.password}"'.encode("utf-16-le"),
        "userAccountControl": str(uac),
        **(extra or {}),
    }
    object_classes = ["top", "person", "organizationalPerson", "user"]
    check(conn, conn.add(spec.dn, object_classes, attributes), f"creating {spec.sam}")


def create_users_online(conn):
    """Every user but the expired-password one, in its state from the start, over one LDAPS connection
    (much faster than a samba-tool process per user)."""
    yesterday = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    for spec in USERS:
        if spec.state in ("good", "locked_out"):
            add_user(conn, spec)
        elif spec.state == "disabled":
            add_user(conn, spec, uac=UF_NORMAL_ACCOUNT | UF_ACCOUNTDISABLE)
        elif spec.state == "account_expired":
            add_user(conn, spec, extra={"accountExpires": str(filetime(yesterday))})
        elif spec.state == "must_change_password":
            add_user(conn, spec, extra={"pwdLastSet": "0"})
        elif spec.state == "logon_hours":
            # 21 bytes = one bit per hour of the week; all zero = never allowed to log on.
            add_user(conn, spec, extra={"logonHours": bytes(21)})
        elif spec.state != "password_expired":  # that one was made offline, under faketime
            raise AssertionError(f"unknown state {spec.state}")
    add_user(conn, SERVICE_ACCOUNT, uac=UF_NORMAL_ACCOUNT | UF_DONT_EXPIRE_PASSWD)


def lock_out(paths, spec):
    """Lock spec's account by bad binds (also re-locks it once the lockout duration has passed)."""
    conn = ldaps_connection(paths, spec.upn, "")
    conn.open()
    try:
        for _ in range(LOCKOUT_THRESHOLD + 1):
            bind_answer(conn, spec.upn, "Not-" + spec.password)
        answer = bind_answer(conn, spec.upn, spec.password)
    finally:
        conn.unbind()
    if answer != "775":
        raise TestbedError(f"{spec.sam} answers {answer}, not 775, after {LOCKOUT_THRESHOLD + 1} bad binds")


def verify_users(paths):
    """Bind as every account on one connection and compare each answer with the expected one."""
    accounts = [(spec.upn, spec.password, spec.expected) for spec in [*USERS, SERVICE_ACCOUNT]]
    accounts.append((UNKNOWN_USER_UPN, "Any!Passw0rd-1", "52e"))
    conn = ldaps_connection(paths, UNKNOWN_USER_UPN, "")
    conn.open()
    try:
        answers = [(upn, expected, bind_answer(conn, upn, password)) for upn, password, expected in accounts]
    finally:
        conn.unbind()
    wrong = [f"{upn}: expected {expected}, got {answer}" for upn, expected, answer in answers if answer != expected]
    if wrong:
        raise TestbedError("accounts do not answer as expected:\n  " + "\n  ".join(wrong))


# --- facts ------------------------------------------------------------------------------------


def build_facts(paths, pid):
    users = {
        spec.sam: {
            "upn": spec.upn,
            "password": spec.password,
            "state": spec.state,
            "expected": spec.expected,
            "mail": spec.mail,
            "display_name": spec.display_name,
            "sam_account_name": spec.sam,
            "netbios_login": f"{NETBIOS_DOMAIN}\\{spec.sam}",
            "dn": spec.dn,
        }
        for spec in USERS
    }
    return {
        "dir": str(paths.root),
        "host": HOST,
        "ldaps_url": LDAPS_URL,
        "ldap_url": LDAP_URL,
        "ca_file": str(paths.ca_cert),
        "realm": REALM,
        "netbios_domain": NETBIOS_DOMAIN,
        "upn_suffix": UPN_SUFFIX,
        "base_dn": BASE_DN,
        "users_dn": USERS_DN,
        "admin_upn": ADMIN_UPN,
        "admin_password": ADMIN_PASSWORD,
        "pid": pid,
        "pid_file": str(paths.pid_file),
        "log_file": str(paths.log_file),
        "smb_conf": str(paths.smb_conf),
        "lockout_threshold": LOCKOUT_THRESHOLD,
        "lockout_duration_minutes": LOCKOUT_DURATION_MINUTES,
        "lockout_reset_after_minutes": LOCKOUT_RESET_AFTER_MINUTES,
        "max_password_age_days": MAX_PASSWORD_AGE_DAYS,
        "service_account": {
            "upn": SERVICE_ACCOUNT.upn,
            "password": SERVICE_ACCOUNT.password,
            "dn": SERVICE_ACCOUNT.dn,
        },
        "unknown_user": {"upn": UNKNOWN_USER_UPN, "expected": "52e"},
        "users": users,
    }


def write_facts(paths, facts):
    with os.fdopen(os.open(paths.facts, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as fh:
        json.dump(facts, fh, indent=2, ensure_ascii=False)
        fh.write("\n")


def read_facts(paths):
    try:
        return json.loads(paths.facts.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TestbedError(f"no {paths.facts}: no testbed was started in {paths.root}") from None


def print_facts(facts, as_json):
    if as_json:
        print(json.dumps(facts))  # ASCII-only (\u escapes), whatever the locale's encoding
        return
    svc = facts["service_account"]
    print(f"Samba AD DC, pid {facts['pid']}, in {facts['dir']}")
    print(f"  LDAPS     {facts['ldaps_url']}  (verify with {facts['ca_file']})")
    print(f"  realm     {facts['realm']}, base DN {facts['base_dn']}")
    print(f"  admin     {facts['admin_upn']}  {facts['admin_password']}")
    print(f"  service   {svc['upn']}  {svc['password']}")
    print(
        f"  lockout   after {facts['lockout_threshold']} bad binds,"
        f" for {facts['lockout_duration_minutes']} min,"
        f" count reset after {facts['lockout_reset_after_minutes']} min"
    )
    print(f"  passwords expire after {facts['max_password_age_days']} days")
    print()
    row = "  {:<9} {:<21} {:<8} {:<26} {:<22} {}"
    print(row.format("user", "state", "bind", "upn", "password", "mail"))
    for name, user in facts["users"].items():
        print(row.format(name, user["state"], user["expected"], user["upn"], user["password"], user["mail"]))
    print(row.format("(none)", "no such user", "52e", facts["unknown_user"]["upn"], "(any)", ""))


# --- commands ---------------------------------------------------------------------------------


def cmd_start(paths, as_json):
    pid = running_pid(paths)
    if pid is not None and paths.facts.exists():
        progress(f"a testbed is already running in {paths.root} (pid {pid})")
        use_host(read_facts(paths).get("host", HOST))  # where it listens, whatever --host said
        lock_out(paths, user_in_state("locked_out"))  # its 30-minute lockout may have lapsed since
        print_facts(read_facts(paths), as_json)
        return
    if pid is not None:
        raise TestbedError(f"a DC runs in {paths.root} (pid {pid}) but left no facts: stop it first")

    timer = PhaseTimer()
    with timer.phase("packages"):
        ensure_packages()
    with timer.phase("prepare dir and TLS"):
        check_ports_free()
        prepare_dir(paths)
        make_tls(paths)
    with timer.phase("provision"):
        provision(paths)
        add_global_options(paths)
    try:
        facts = start_and_populate(paths, timer)
    except BaseException:
        progress(stop_dc(paths))  # leave no half-made DC holding the fixed ports
        raise
    progress(f"ready in {facts['start_seconds']:.1f} s: {LDAPS_URL}, CA {paths.ca_cert}, pid {facts['pid']}")
    print_facts(facts, as_json)


def start_and_populate(paths, timer):
    with timer.phase("start samba"), concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        # The offline user creation needs no running DC, so it overlaps with samba's start-up.
        expired = pool.submit(create_expired_password_user_offline, paths, user_in_state("password_expired"))
        start_samba(paths)
        wait_for_ldaps(paths)
        expired.result()
    with timer.phase("policy and users"):
        conn = admin_connection(paths)
        try:
            set_domain_policy(conn)
            create_users_online(conn)
        finally:
            conn.unbind()
    with timer.phase("lock out and verify"):
        lock_out(paths, user_in_state("locked_out"))
        verify_users(paths)
    facts = build_facts(paths, running_pid(paths))
    facts["start_seconds"] = timer.total()
    facts["phase_seconds"] = timer.phases
    write_facts(paths, facts)
    return facts


def main(argv=None):
    parser = argparse.ArgumentParser(prog="scripts/ad-testbed", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="provision, start and populate a DC in DIR")
    start.add_argument("--dir", required=True)
    start.add_argument("--json", action="store_true", help="print the facts as one JSON line on stdout")
    start.add_argument("--host", default=HOST, help="the loopback address to listen on (default %(default)s)")
    commands.add_parser("stop", help="stop the DC of DIR, by its pid file").add_argument("--dir", required=True)
    commands.add_parser("facts", help="print DIR/facts.json").add_argument("--dir", required=True)
    commands.add_parser("install", help="install the Debian packages the DC needs when they are missing (apt, "
                                        "so before entering a network namespace)")
    args = parser.parse_args(argv)
    paths = Paths(getattr(args, "dir", ""))
    try:
        if args.command == "install":
            ensure_packages()
        elif args.command == "start":
            use_host(args.host)
            cmd_start(paths, args.json)
        elif args.command == "stop":
            if paths.facts.exists():  # where that DC listens, to see its port close
                use_host(read_facts(paths).get("host", HOST))
            print(stop_dc(paths))
        else:
            print(json.dumps(read_facts(paths), indent=2))
    except (TestbedError, subprocess.TimeoutExpired) as exc:
        print(f"ad-testbed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
