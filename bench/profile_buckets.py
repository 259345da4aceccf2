"""Where a Daphne node's CPU goes, by component, from py-spy's raw folded stacks (bench/run --costs --py-spy).

    .venv/bin/python bench/profile_buckets.py RUN-local-web1.folded [MORE.folded …] [--top 5]
    .venv/bin/python bench/profile_buckets.py --gap PROD.json … --minus EMBEDDED.json …   # component by component

py-spy's raw format is one line per distinct stack, root first, frames separated by `;`, each frame
`function (file:line)`, then a space and the number of samples. Record without `--gil` and without `--idle`:
py-spy then keeps every thread that Linux reports running, which is what the CPU counters count; `--gil` keeps
only the thread holding the GIL and loses C code that releases it (SQLite's statements, a socket's send).

Each sample goes to one component: the innermost frame that belongs to a component names it, frames of the
standard library's general modules (json, re, socket, uuid, …) being transparent (a `json.dumps` called by the
session store is the session store's). So the ORM bucket is the ORM with its driver, not what the portal does
around a query, and "portal code" is the portal's own Python between its calls into the others. A garbage
collection runs in C under whatever frame allocated: py-spy shows no frame of it, so the gc bucket is near
empty and the collector's pauses are measured by the Server-Timing header instead (bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

# (component, path fragments, function names): a frame belongs to the first component one of whose fragments is
# in "/" + its file (so "/redis/" is redis-py, not channels_redis) or whose name it has ("fragment:name": that
# name in such a file only). Order matters where a fragment is inside another's package (the Django cache backend
# before Django, the portal's sessions before the portal).
COMPONENTS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("gc", ("/gc/",), ("_gc_callback", "<gc>")),
    ("logging", ("/logging/", "/config/logfilters.py"), ()),
    ("templates", ("/django/template/", "/django/templatetags/", "/templatetags/", "/jinja2/"), ()),
    ("sessions", ("/django/contrib/sessions/", "/signin/sessions.py"), ()),
    ("ORM + DB driver", ("/django/db/", "/psycopg/", "/psycopg_pool/", "/psycopg2/", "/sqlite3/"), ()),
    ("channel layer", ("/channels/layers.py", "/channels_redis/", "/agents/handoff/"), ()),
    ("Redis client + cache", ("/redis/", "/hiredis/", "/config/redis.py", "/config/locmem.py",
                              "/django/core/cache/"), ()),
    # cryptography's Rust shows no frame: its time is the calling line's, so the protocol's sealing and signing
    # functions, which call it and little else, are counted here too
    ("cryptography", ("/cryptography/", "/nacl/", "/hmac.py"),
     tuple(f"/pta_protocol/:{name}" for name in ("_seal", "_open", "sign_request", "verify_request", "_verify_pss",
                                                  "sign_challenge", "verify_challenge", "sign_renewal",
                                                  "key_fingerprint"))),
    ("Django request + middleware", ("/django/",), ()),
    ("asyncio + asgiref + channels", ("/asyncio/", "/asgiref/", "/channels/", "/concurrent/futures/",
                                      "/threading.py", "/selectors.py", "/contextvars"), ()),
    ("Twisted + Daphne HTTP", ("/twisted/", "/daphne/", "/autobahn/", "/txaio/", "/zope/", "/bin/daphne"), ()),
    ("portal code", ("/signin/", "/agents/", "/tenant/", "/health/", "/trail/", "/config/", "/pta_protocol/",
                     "/applications/", "/branding/", "/samlidp/"), ()),
]
OTHER = "other"
ORDER = [name for name, _, _ in COMPONENTS] + [OTHER]
# A thread whose innermost frame is one of these is blocked (epoll, a worker's empty queue, a condition, a Redis
# or PostgreSQL answer) or has just been woken from it: py-spy keeps a thread whose /proc state is R, and Linux
# reports a woken thread R while it waits for a CPU (on a busy machine, much of the time); py-spy also reads the
# state a moment after the stack. Not CPU the process spends: counted apart, left out of the split.
WAITING = "waiting (blocked or woken, not yet on a CPU)"
WAITING_LEAVES: tuple[tuple[str, str], ...] = (
    ("selectors.py", "select"), ("concurrent/futures/thread.py", "_worker"), ("threading.py", "wait"),
    ("threading.py", "_wait_for_tstate_lock"), ("queue.py", "get"), ("asyncio/base_events.py", "run_forever"),
    ("redis/_parsers/hiredis.py", "read_from_socket"), ("redis/_parsers/socket.py", "_read_from_socket"),
    ("psycopg/connection.py", "wait"), ("psycopg/waiting.py", "wait"), ("psycopg/waiting.py", "wait_epoll"),
    ("psycopg/waiting.py", "wait_select"), ("psycopg/waiting.py", "wait_poll"),
)
FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def parse_line(line: str) -> tuple[list[str], int] | None:
    """`a (x.py:1);b (y.py:2) 7` → (["a (x.py:1)", "b (y.py:2)"], 7); None for a line that is not a stack."""
    stack, _, count = line.rstrip("\n").rpartition(" ")
    if not stack or not count.isdigit():
        return None
    return stack.split(";"), int(count)


def frame_component(frame: str) -> str | None:
    """The component a frame belongs to, None for a transparent one (the standard library's general modules,
    a process or thread marker)."""
    match = FRAME.match(frame)
    name, path = (match.group("name"), "/" + match.group("file")) if match else (frame, "")
    for component, fragments, names in COMPONENTS:
        if any(fragment in path for fragment in fragments) or any(_named(entry, name, path) for entry in names):
            return component
    if match and ("site-packages/" in path or "/" in path.strip("/")) and not _stdlib(path):
        return OTHER
    return None


def _named(entry: str, name: str, path: str) -> bool:
    fragment, _, function = entry.rpartition(":")
    return name == function and fragment in path


_STDLIB_TOP = {"json", "re", "socket", "ssl", "uuid", "base64", "typing", "functools", "enum", "copy",
               "datetime", "ipaddress", "urllib", "email", "http", "collections", "abc", "secrets", "random",
               "hashlib", "string", "weakref", "inspect", "traceback", "os", "posixpath", "genericpath", "time",
               "struct", "zlib", "binascii", "operator", "contextlib", "dataclasses", "decimal", "calendar",
               "encodings", "codecs", "io", "types", "warnings", "importlib", "queue", "heapq", "bisect",
               "pickle", "copyreg", "locale", "gettext", "textwrap", "html", "unicodedata", "signal", "errno",
               "stat", "fnmatch", "shlex", "tempfile", "pathlib", "zoneinfo", "numbers", "fractions", "statistics"}


def _stdlib(path: str) -> bool:
    first = path.strip("/").split("/", 1)[0]
    return first.removesuffix(".py") in _STDLIB_TOP


def waiting(frame: str) -> bool:
    """Whether a stack's innermost frame is a thread blocked or just woken (WAITING_LEAVES)."""
    match = FRAME.match(frame)
    if not match:
        return False
    name, path = match.group("name"), match.group("file")
    return any(path.endswith(file) and (name == function or name.endswith("." + function))
               for file, function in WAITING_LEAVES)


def stack_component(frames: list[str]) -> str:
    """WAITING for a blocked thread; else the innermost frame's component that is not transparent; `other` when
    none is."""
    if frames and waiting(frames[-1]):
        return WAITING
    for frame in reversed(frames):
        if (component := frame_component(frame)) is not None:
            return component
    return OTHER


def bucket_counts(lines) -> Counter[str]:
    """Samples per component over raw folded lines."""
    counts: Counter[str] = Counter()
    for line in lines:
        if (parsed := parse_line(line)) is not None:
            frames, count = parsed
            counts[stack_component(frames)] += count
    return counts


def top_frames(lines, component: str, limit: int = 5) -> list[tuple[str, int]]:
    """The frames that name ``component`` most often (the innermost of it in each stack), with their samples,
    line numbers dropped."""
    counts: Counter[str] = Counter()
    for line in lines:
        if (parsed := parse_line(line)) is None:
            continue
        frames, count = parsed
        if frames and waiting(frames[-1]):
            continue
        for frame in reversed(frames):
            if (found := frame_component(frame)) is not None:
                if found == component:
                    counts[re.sub(r":\d+\)$", ")", frame)] += count
                break
    return counts.most_common(limit)


def on_cpu(counts: Counter[str]) -> int:
    """The samples of threads at work (all but WAITING)."""
    return sum(n for name, n in counts.items() if name != WAITING)


def split_ms(counts: Counter[str], cpu_ms: float) -> dict[str, float]:
    """Each component's share of the samples at work times ``cpu_ms`` (the process counters' CPU over the same
    sign-ins): ms per sign-in by component, summing to ``cpu_ms``."""
    total = on_cpu(counts)
    return {name: round(counts.get(name, 0) * cpu_ms / total, 3) for name in ORDER} if total else {}


def read_lines(paths) -> list[str]:
    return [line for path in paths for line in Path(path).read_text(errors="replace").splitlines()]


def run_split(path: Path, placement: str = "local") -> dict[str, float]:
    """A `bench/run --costs --py-spy` result's split for ``placement``, re-read from its folded files with these
    rules: ms per sign-in by component, the profile's shares of the nodes' counter CPU over the counted sign-ins
    (those made without py-spy: attached, it costs the nodes some CPU of its own)."""
    report = json.loads(path.read_text())
    row = next(r for r in report["costs"] if r["placement"] == placement)
    profile = row["profile"]
    counts = bucket_counts(read_lines([path.parent / name for name in profile["files"]
                                       if (path.parent / name).exists()]))
    return split_ms(counts, row["portal_cpu_ms_per_signin"])


def gap_table(minuend: list[Path], subtrahend: list[Path], placement: str = "local") -> list[str]:
    """Markdown: each component's ms per sign-in, mean over the runs of each side, and their difference."""
    def mean(paths: list[Path]) -> dict[str, float]:
        splits = [run_split(path, placement) for path in paths]
        return {name: sum(s.get(name, 0.0) for s in splits) / len(splits) for name in ORDER}

    a, b = mean(minuend), mean(subtrahend)
    lines = ["| component | first side ms | second side ms | difference ms |", "| --- | --- | --- | --- |"]
    for name in ORDER:
        if a[name] or b[name]:
            lines.append(f"| {name} | {a[name]:.2f} | {b[name]:.2f} | {a[name] - b[name]:+.2f} |")
    lines.append(f"| **total** | {sum(a.values()):.2f} | {sum(b.values()):.2f} | "
                 f"{sum(a.values()) - sum(b.values()):+.2f} |")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folded", nargs="*", help="py-spy raw folded files (summed)")
    parser.add_argument("--top", type=int, default=3, help="frames listed per component")
    parser.add_argument("--gap", nargs="+", metavar="RUN.json", default=[],
                        help="--costs --py-spy results: those before --minus less those after it, component by "
                             "component (means over each side's runs)")
    parser.add_argument("--minus", nargs="+", metavar="RUN.json", default=[])
    parser.add_argument("--placement", default="local")
    args = parser.parse_args(argv)
    if args.gap:
        if not args.minus:
            parser.error("--gap needs --minus")
        print("\n".join(gap_table([Path(p) for p in args.gap], [Path(p) for p in args.minus], args.placement)))
        return 0
    if not args.folded:
        parser.error("folded files or --gap … --minus … expected")
    lines = read_lines(args.folded)
    counts = bucket_counts(lines)
    total = on_cpu(counts) or 1
    print(f"{WAITING}: {counts.get(WAITING, 0)} samples, left out; the shares below are of the {total} others")
    for name in ORDER:
        if counts.get(name):
            print(f"{name:32} {counts[name]:7d} {100 * counts[name] / total:5.1f} %")
            for frame, n in top_frames(lines, name, args.top):
                print(f"    {n:6d}  {frame}")
    print(f"{'at work':32} {on_cpu(counts):7d}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
