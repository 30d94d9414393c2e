"""The callback plugin's own Redis connection: the URLs a run is given, Redis's errors, reconnecting."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import uuid

import pytest
import redis as redis_lib

from app.cli import start_embedded_redis
from app.config import Settings, embedded_redis_urls
from app.execution.runner import CALLBACK_DIR
from tests.conftest import plugin_module, run_redis_user, url_as

plugin = plugin_module(CALLBACK_DIR / "opsflow.py", "opsflow_callback_stream")


@pytest.fixture
def stream(redis_url):
    name = f"test:callback:{uuid.uuid4().hex}"
    yield name
    redis_lib.Redis.from_url(redis_url).delete(name)


def entries(url: str, stream: str) -> list[dict]:
    return [
        {key.decode(): value.decode() for key, value in fields.items()}
        for _, fields in redis_lib.Redis.from_url(url).xrange(stream)
    ]


def test_events_reach_the_stream_as_a_user_limited_to_adding_events(redis_url, stream):
    with run_redis_user(redis_url, stream) as url:
        events = plugin.EventStream(url, stream)
        events.add({"events": json.dumps([{"type": "task_start", "host": "web-1"}])})
        events.add({"events": "[]"})
        events.close()
    assert entries(redis_url, stream) == [
        {"events": '[{"type": "task_start", "host": "web-1"}]'},
        {"events": "[]"},
    ]


def test_the_database_may_be_named_in_the_query(redis_url, stream):
    base, _, db = redis_url.rpartition("/")
    plugin.EventStream(f"{base}?db={db}", stream).add({"events": "[]"})
    assert entries(redis_url, stream) == [{"events": "[]"}]


def test_a_refused_login_is_an_error_with_redis_own_words(redis_url, stream):
    with run_redis_user(redis_url, stream) as url:
        wrong = url_as(url, url.split("//")[1].split(":")[0], "not-the-password")
        with pytest.raises(plugin.RedisError, match="WRONGPASS"):
            plugin.EventStream(wrong, stream).add({"events": "[]"})
    assert entries(redis_url, stream) == []


def test_a_command_the_user_may_not_run_is_an_error(redis_url, stream):
    with (
        run_redis_user(redis_url, "some:other:stream") as url,
        pytest.raises(plugin.RedisError, match="NOPERM"),
    ):
        plugin.EventStream(url, stream).add({"events": "[]"})


def test_nothing_listening_is_an_os_error():
    with pytest.raises(OSError):
        plugin.EventStream("redis://127.0.0.1:1/0", "any").add({"events": "[]"})


def test_a_connection_the_server_dropped_is_made_again(redis_url, stream):
    events = plugin.EventStream(redis_url, stream)
    events.add({"events": "[1]"})
    address, port = events.connection.getsockname()[:2]
    redis_lib.Redis.from_url(redis_url).execute_command("CLIENT", "KILL", "ADDR", f"{address}:{port}")
    with pytest.raises((ConnectionError, OSError)):
        events.add({"events": "[2]"})
    events.add({"events": "[3]"})
    assert [entry["events"] for entry in entries(redis_url, stream)] == ["[1]", "[3]"]


def test_the_embedded_redis_socket_as_the_runs_user(short_tmp_dir):
    settings = dataclasses.replace(Settings.from_env(), data_dir=short_tmp_dir)
    process = start_embedded_redis(settings)
    try:
        service_url, run_url = embedded_redis_urls(short_tmp_dir)
        plugin.EventStream(run_url, settings.event_stream).add({"events": "[]"})
        assert entries(service_url, settings.event_stream) == [{"events": "[]"}]
    finally:
        process.terminate()
        process.wait()


def test_the_plugin_loads_without_redis_py():
    # Every run loads the plugin before its first task: redis-py alone took 80 ms of CPU to import.
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('cb', {str(CALLBACK_DIR / 'opsflow.py')!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print('redis' in sys.modules)\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"
