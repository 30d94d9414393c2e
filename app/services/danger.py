"""Dangerous-command rules: saving them, and checking script content against them.

Patterns are RE2 expressions (the google-re2 package): RE2 matches in time linear
in the text, so a user's pattern cannot backtrack catastrophically on a user's
script. Each line of a script is matched on its own, so a match names its line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import re2
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import with_expression

from app.config import DANGER_PATTERN_MAX_CHARS
from app.config import current as settings
from app.extensions import db
from app.models import DangerRule, DangerRuleOverride, RuleAction
from app.services import records
from app.services.access import Action, Actor, require, require_scope
from app.services.errors import Conflict, Invalid, NotFound, TooLarge

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False


@dataclass(frozen=True)
class Match:
    rule_id: int
    description: str
    action: str
    line_number: int
    line: str


@dataclass(frozen=True)
class Verdict:
    matches: list[Match]

    @property
    def verdict(self) -> str:
        """allow, warn (scan matches only) or refuse (an intercept matched)."""
        if any(match.action == RuleAction.INTERCEPT for match in self.matches):
            return "refuse"
        return "warn" if self.matches else "allow"

    @property
    def warnings(self) -> list[dict[str, Any]]:
        return [asdict(match) for match in self.matches if match.action == RuleAction.SCAN]


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Any:
    """The compiled RE2 pattern, or Invalid naming `pattern` with the reason."""
    if len(pattern) > DANGER_PATTERN_MAX_CHARS:
        raise Invalid(f"a pattern has at most {DANGER_PATTERN_MAX_CHARS} characters", "pattern")
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode() if isinstance(exc.args[0], bytes) else str(exc.args[0])
        raise Invalid(f"not a valid regular expression (RE2 syntax): {reason}", "pattern") from exc


def scan(rules: Iterable[DangerRule], content: str, language: str) -> list[Match]:
    """Every match of the rules that apply to `language`, line by line, in line order."""
    applicable = [
        (rule, compile_pattern(rule.pattern))
        for rule in rules
        if not rule.languages or language in rule.languages
    ]
    matches = []
    for number, line in enumerate(content.splitlines(), start=1):
        for rule, pattern in applicable:
            if pattern.search(line):
                matches.append(Match(rule.id, rule.description, rule.action, number, line))
    return matches


def in_force_query(project_id: int | None) -> Select:
    """Global rules, plus the project's own, each with `in_force` as it holds in the project."""
    if project_id is None:
        return (
            select(DangerRule)
            .where(DangerRule.project_id.is_(None))
            .options(with_expression(DangerRule.in_force, DangerRule.enabled))
            .execution_options(populate_existing=True)
        )
    switch = and_(DangerRuleOverride.rule_id == DangerRule.id, DangerRuleOverride.project_id == project_id)
    return (
        select(DangerRule)
        .outerjoin(DangerRuleOverride, switch)
        .where(or_(DangerRule.project_id.is_(None), DangerRule.project_id == project_id))
        .options(with_expression(DangerRule.in_force, _in_force()))
        .execution_options(populate_existing=True)
    )


def _in_force() -> Any:
    return func.coalesce(DangerRuleOverride.enabled, DangerRule.enabled)


def enabled_rules(project_id: int | None) -> list[DangerRule]:
    """The rules in force in the project (None: the global ones in force)."""
    query = in_force_query(project_id)
    query = query.where(DangerRule.enabled if project_id is None else _in_force())
    return list(db.session.scalars(query.order_by(DangerRule.id)))


def check(project_id: int | None, content: str, language: str) -> Verdict:
    """The verdict on a script in a project (None: global rules only)."""
    return Verdict(scan(enabled_rules(project_id), content, language))


def refuse_intercepted(verdict: Verdict, field: str) -> None:
    """Invalid naming the first intercepting rule and its line, with every match in the details."""
    blocking = [match for match in verdict.matches if match.action == RuleAction.INTERCEPT]
    if blocking:
        first = blocking[0]
        raise Invalid(
            f"line {first.line_number} matches dangerous-command rule {first.rule_id} "
            f"({first.description}): {first.line.strip()}",
            field,
            details={"matches": [asdict(match) for match in verdict.matches]},
        )


def get(project_id: int | None, rule_id: int) -> DangerRule:
    """A global rule, or one of the project's own; another project's rule counts as missing."""
    rule = db.session.scalar(in_force_query(project_id).where(DangerRule.id == rule_id))
    if rule is None:
        raise NotFound(f"danger rule {rule_id} does not exist")
    return rule


def create(actor: Actor, project_id: int | None, data: dict[str, Any]) -> DangerRule:
    require_scope(actor, project_id, Action.ADMIN)
    compile_pattern(data["pattern"])
    rule = records.save(DangerRule(project_id=project_id, **data), "pattern")
    return get(project_id, rule.id)


def update(actor: Actor, project_id: int | None, rule_id: int, data: dict[str, Any]) -> DangerRule:
    """Change a rule; a project changes only `enabled` of a global rule, for itself alone."""
    require_scope(actor, project_id, Action.ADMIN)
    rule = get(project_id, rule_id)
    if project_id is not None and rule.project_id is None:
        return switch(actor, project_id, rule, data)
    if "pattern" in data:
        compile_pattern(data["pattern"])
    records.update(rule, data, "pattern")
    return get(project_id, rule_id)


def switch(actor: Actor, project_id: int, rule: DangerRule, data: dict[str, Any]) -> DangerRule:
    # Read before the commit: reloading an expired rule would repeat its project-bound query.
    rule_id = rule.id
    other = sorted(set(data) - {"enabled"})
    if other:
        raise Invalid(f"rule {rule_id} is global: a project turns it on or off with `enabled` only", other[0])
    if "enabled" in data:
        override = db.session.scalar(
            select(DangerRuleOverride).where(
                DangerRuleOverride.project_id == project_id, DangerRuleOverride.rule_id == rule_id
            )
        )
        if override is None:
            override = DangerRuleOverride(project_id=project_id, rule_id=rule_id)
            db.session.add(override)
        override.enabled = data["enabled"]
        override.updated_by = actor.username
        db.session.commit()
    return get(project_id, rule_id)


def delete(actor: Actor, project_id: int | None, rule_id: int) -> None:
    require_scope(actor, project_id, Action.ADMIN)
    rule = get(project_id, rule_id)
    if project_id is not None and rule.project_id is None:
        raise Conflict(f"rule {rule.id} is global: turn it off for this project with enabled false", "id")
    records.delete(rule)


def check_content(actor: Actor, project_id: int, content: str, language: str) -> Verdict:
    """The verdict the project's rules give a script, for a caller who may read the project."""
    require(actor, project_id, Action.READ)
    refuse_oversized(content, "content")
    return check(project_id, content, language)


def refuse_oversized(content: str, field: str) -> None:
    limit = settings().script_max_bytes
    if len(content.encode()) > limit:
        raise TooLarge(f"the script is larger than {limit} bytes", field)
