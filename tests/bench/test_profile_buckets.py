"""bench/profile_buckets.py: py-spy's raw folded stacks attributed to components, on a small sample (no
profiler): the innermost frame of a component names it, the standard library's general modules are transparent,
blocked or just-woken threads are counted apart, and the split of the counter CPU sums to it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from bench import profile_buckets as pb

LOOP = ("run (twisted/internet/asyncioreactor.py:250);_run_once (asyncio/base_events.py:1922);"
        "_run (asyncio/events.py:80)")
WORKER = "_bootstrap (threading.py:1002);run (threading.py:982);_worker (concurrent/futures/thread.py:83)"
SAMPLE = [
    # the portal's consumer calling the ORM, which runs SQLite (GIL released, still on a CPU)
    f"{LOOP};PasswordPostConsumer.handle (signin/consumers.py:300);user_by_upn (tenant/selectors.py:47);"
    "RawQuerySet.iterator (django/db/models/query.py:2100);execute (django/db/backends/sqlite3/base.py:328) 7",
    # psycopg under the ORM in a worker thread
    f"{WORKER};run (concurrent/futures/thread.py:58);thread_handler (asgiref/sync.py:522);"
    "record (signin/services/records.py:40);save (django/db/models/base.py:800);execute (psycopg/cursor.py:97) 5",
    # a json.dumps of the session store: json is transparent, the session store names it
    f"{LOOP};SessionStore.save (signin/sessions.py:60);dumps (json/__init__.py:231);"
    "JSONEncoder.iterencode (json/encoder.py:258) 4",
    # redis-py under the channel layer: the innermost component is redis-py; channels_redis is the layer
    f"{LOOP};PubSubChannelLayer.send (agents/handoff/layer.py:90);execute_command (redis/asyncio/client.py:600) 3",
    f"{LOOP};RedisPubSubChannelLayer.send (channels_redis/pubsub.py:120) 2",
    f"{LOOP};get (config/redis.py:44);execute_command (redis/client.py:559) 2",
    # cryptography sealing, under the portal's sealing
    f"{LOOP};_seal (pta_protocol/__init__.py:200);encrypt (cryptography/hazmat/primitives/ciphers/aead.py:50) 3",
    f"{LOOP};render (django/template/base.py:170) 2",
    f"{LOOP};render (signin/templatetags/pta.py:12) 1",
    f"{LOOP};process_request (django/middleware/csrf.py:400) 2",
    f"{LOOP};dataReceived (twisted/web/http.py:2300);handle_reply (daphne/http_protocol.py:250) 3",
    f"{LOOP};info (logging/__init__.py:1489) 1",
    f"{LOOP};_gc_callback (signin/timing.py:33) 1",
    f"{LOOP};place_recognised (signin/services/lockout.py:300);uuid4 (uuid.py:720) 2",
    f"{LOOP};call_soon (asyncio/base_events.py:760) 1",
    f"{LOOP};something (ua_parser/core.py:10) 1",
    # blocked or woken threads: not work
    "run_forever (asyncio/base_events.py:607);_run_once (asyncio/base_events.py:1884);"
    "EpollSelector.select (selectors.py:468) 9",
    f"{WORKER} 6",
    f"{LOOP};get (config/redis.py:44);execute_command (redis/client.py:559);"
    "_HiredisParser.read_from_socket (redis/_parsers/hiredis.py:80) 4",
    f"{WORKER};save (django/db/models/base.py:800);Connection.wait (psycopg/connection.py:450) 3",
    "_bootstrap (threading.py:1002);Condition.wait (threading.py:320) 2",
    "not a stack line",
    "",
]


def test_each_sample_goes_to_the_innermost_component():
    counts = pb.bucket_counts(SAMPLE)
    assert counts == Counter({
        "ORM + DB driver": 12, "sessions": 4, "Redis client + cache": 5, "channel layer": 2, "cryptography": 3,
        "templates": 3, "Django request + middleware": 2, "Twisted + Daphne HTTP": 3, "logging": 1, "gc": 1,
        "portal code": 2, "asyncio + asgiref + channels": 1, "other": 1, pb.WAITING: 24})
    assert pb.on_cpu(counts) == sum(counts.values()) - 24


def test_transparent_frames_and_unknown_packages():
    assert pb.frame_component("dumps (json/__init__.py:231)") is None
    assert pb.frame_component("uuid4 (uuid.py:720)") is None
    assert pb.frame_component("<module> (<frozen importlib._bootstrap>:1)") is None
    assert pb.frame_component("x (ua_parser/core.py:1)") == "other"
    assert pb.frame_component("RedisPubSubChannelLayer.send (channels_redis/pubsub.py:1)") == "channel layer"
    assert pb.frame_component("get (redis/client.py:1)") == "Redis client + cache"
    assert pb.frame_component("_seal (pta_protocol/__init__.py:531)") == "cryptography"  # its Rust has no frame
    assert pb.frame_component("encode (pta_protocol/__init__.py:384)") == "portal code"
    assert pb.frame_component("_seal (signin/other.py:1)") == "portal code"
    assert pb.stack_component(["dumps (json/__init__.py:231)"]) == "other"  # nothing of a component: other
    assert pb.parse_line("a (x.py:1);b (y.py:2) 7") == (["a (x.py:1)", "b (y.py:2)"], 7)
    assert pb.parse_line("a (x.py:1) seven") is None


def test_the_split_shares_the_counter_cpu_among_the_samples_at_work():
    counts = pb.bucket_counts(SAMPLE)
    split = pb.split_ms(counts, cpu_ms=4.2)
    assert abs(sum(split.values()) - 4.2) < 0.01
    assert split["ORM + DB driver"] == round(12 * 4.2 / 40, 3)
    assert pb.WAITING not in split
    assert pb.split_ms(Counter(), 4.2) == {}


def test_top_frames_name_the_innermost_frame_of_the_component_without_line_numbers():
    top = pb.top_frames(SAMPLE, "ORM + DB driver")
    assert top == [("execute (django/db/backends/sqlite3/base.py)", 7), ("execute (psycopg/cursor.py)", 5)]
    assert pb.top_frames(SAMPLE, "asyncio + asgiref + channels") == [("call_soon (asyncio/base_events.py)", 1)]


def test_the_gap_of_two_runs_is_read_back_from_their_results(tmp_path):
    def run(name: str, lines: list[str], cpu_ms: float) -> Path:
        (tmp_path / f"{name}-web1.folded").write_text("\n".join(lines) + "\n")
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"costs": [{"placement": "local", "portal_cpu_ms_per_signin": cpu_ms, "profile": {
            "files": [f"{name}-web1.folded", f"{name}-web2.folded"],  # a missing file is skipped
            "portal_cpu_ms_per_signin": cpu_ms * 1.3}}]}))  # the profiled sign-ins' CPU: not the one split
        return path

    production = run("production", [f"{LOOP};get (config/redis.py:44) 3",
                                     f"{LOOP};render (django/template/base.py:1) 1"], 8.0)
    embedded = run("embedded", [f"{LOOP};render (django/template/base.py:1) 1"], 2.0)
    assert pb.run_split(production)["Redis client + cache"] == 6.0
    table = pb.gap_table([production], [embedded])
    assert "| Redis client + cache | 6.00 | 0.00 | +6.00 |" in table
    assert "| templates | 2.00 | 2.00 | +0.00 |" in table
    assert table[-1] == "| **total** | 8.00 | 2.00 | +6.00 |"
