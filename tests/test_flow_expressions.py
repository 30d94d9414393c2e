"""CEL conditions and ${} references: compiled on save, evaluated over values only, rendered as data."""

from __future__ import annotations

import pytest

from app.flows.expressions import ConditionError, compile_condition, references, render
from app.secrets import MASK


def test_a_condition_reads_its_variables_and_holds_or_not() -> None:
    condition = compile_condition('version.startsWith("2.") && size(hosts) > 3', ["version", "hosts"])
    assert condition.names == {"version", "hosts"}
    assert condition.holds({"version": "2.4", "hosts": ["a", "b", "c", "d"]}) is True
    assert condition.holds({"version": "1.9", "hosts": ["a", "b", "c", "d"]}) is False
    assert condition.holds({"version": "2.4", "hosts": ["a"]}) is False


def test_fields_numbers_booleans_and_macros() -> None:
    condition = compile_condition(
        "_system.task_id > 2 && ready && hosts.exists(h, h == 'web1') && ratio >= 0.5",
        ["_system", "ready", "hosts", "ratio"],
    )
    assert condition.names == {"_system", "ready", "hosts", "ratio"}
    values = {"_system": {"task_id": 3}, "ready": True, "hosts": ["db1", "web1"], "ratio": 0.5}
    assert condition.holds(values) is True
    assert condition.holds({**values, "ready": False}) is False


@pytest.mark.parametrize(
    "text, message",
    [
        ("1 +", "not a CEL expression"),
        ("", "non-empty"),
        ("   ", "non-empty"),
        ("x > 1", "no variable named x"),
        ("version == other", "no variable named other"),
        ("a" * 5000, "at most"),
    ],
)
def test_a_bad_condition_is_refused_when_compiled(text: str, message: str) -> None:
    with pytest.raises(ConditionError, match=message):
        compile_condition(text, ["version"])


def test_a_condition_that_is_not_a_boolean_or_meets_a_wrong_type_does_not_hold_silently() -> None:
    with pytest.raises(ConditionError, match="not a boolean"):
        compile_condition("version", ["version"]).holds({"version": "2"})
    with pytest.raises(ConditionError, match="cannot be evaluated"):
        compile_condition('version.startsWith("2")', ["version"]).holds({"version": 2})
    with pytest.raises(ConditionError, match="cannot be evaluated"):
        compile_condition("count > 1", ["count"]).holds({})


def test_a_condition_cannot_reach_anything_but_the_values() -> None:
    # No CEL function opens files, runs programs or reads the environment; unknown calls fail.
    with pytest.raises(ConditionError):
        compile_condition('open("/etc/passwd") == ""', []).holds({})
    with pytest.raises(ConditionError):
        compile_condition("__import__('os').system('id') == 0", []).holds({})
    # A value that looks like code stays a value.
    condition = compile_condition('cmd == "$(rm -rf /)"', ["cmd"])
    assert condition.holds({"cmd": "$(rm -rf /)"}) is True


def test_references_are_found_in_nested_inputs() -> None:
    found = references({"url": "http://${host}/${_project.base}", "body": [{"x": "${a.b}"}], "n": 3})
    assert [(ref.name, ref.field) for ref in found] == [("host", None), ("_project", "base"), ("a", "b")]
    assert references("${VAR:-x} ${1abc} $name {x}") == []


def test_render_replaces_known_names_and_leaves_everything_else() -> None:
    values = {"version": "2.1", "hosts": ["a", "b"], "ticket": {"id": 7}, "count": 3}
    rendered, _ = render(
        {"line": "v=${version} ${VAR:-x} ${unknown} ${ticket.id} ${ticket.nope} n=${count}"}, values
    )
    assert rendered == {"line": "v=2.1 ${VAR:-x} ${unknown} 7 ${ticket.nope} n=3"}


def test_a_lone_reference_keeps_the_type_of_its_value() -> None:
    rendered, _ = render(
        ["${hosts}", "${count}", "${ticket}", "x${hosts}"], {"hosts": ["a"], "count": 3, "ticket": {"id": 1}}
    )
    assert rendered == [["a"], 3, {"id": 1}, 'x["a"]']


def test_render_never_renders_twice_nor_keys() -> None:
    values = {"a": "${b}", "b": "secret-b", "k": "K"}
    rendered, _ = render({"${k}": "${a}"}, values)
    assert rendered == {"${k}": "${b}"}


def test_values_holding_code_stay_text() -> None:
    values = {"name": "$(rm -rf /) {{ lookup('pipe', 'id') }} `id`"}
    rendered, _ = render("hello ${name}", values)
    assert rendered == "hello $(rm -rf /) {{ lookup('pipe', 'id') }} `id`"


def test_secrets_are_masked_in_the_shown_form_only() -> None:
    rendered, shown = render(
        {"auth": "Bearer ${token}", "user": "${user}"}, {"token": "s3cr3t", "user": "ops"}, ["token"]
    )
    assert rendered == {"auth": "Bearer s3cr3t", "user": "ops"}
    assert shown == {"auth": f"Bearer {MASK}", "user": "ops"}
