"""The SQLAlchemy models, one module per aggregate."""

from app.models.account import Account
from app.models.audit import AuditEvent
from app.models.identity import ApiToken, Membership, Role, User
from app.models.inventory import Connection, DynamicGroup, Group, Host
from app.models.job import HostResult, JobInstance, Slice, StepInstance, TaskResult
from app.models.project import Project
from app.models.status import HostStatus, RunStatus

__all__ = [
    "Account",
    "ApiToken",
    "AuditEvent",
    "Connection",
    "DynamicGroup",
    "Group",
    "Host",
    "HostResult",
    "HostStatus",
    "JobInstance",
    "Membership",
    "Project",
    "Role",
    "RunStatus",
    "Slice",
    "StepInstance",
    "TaskResult",
    "User",
]
