"""The SQLAlchemy models, one module per aggregate."""

from app.models.account import Account
from app.models.audit import AuditEvent
from app.models.credential import Credential, CredentialKind
from app.models.danger import DangerRule, DangerRuleOverride, RuleAction
from app.models.file import FileResult, StoredFile
from app.models.flow import Flow, FlowCategory, FlowTask, FlowVersion, NodeAttempt, NodeState, ProjectVariable
from app.models.identity import ApiToken, Membership, Role, User
from app.models.inventory import Connection, DynamicGroup, Group, Host
from app.models.job import (
    HostResult,
    IdempotencyKey,
    JobInstance,
    JobOperation,
    LaunchType,
    NamespaceValue,
    OnFailure,
    RollingMode,
    Slice,
    StepInstance,
    TaskResult,
)
from app.models.project import Project
from app.models.repository import Repository, RepositoryRevision, SourceType
from app.models.script import Script, ScriptVersion
from app.models.template import JobPlan, JobTemplate, StepType, VariableType
from app.models.timer import Overlap, RunOrigin, TimedJob, TimedJobRun
from app.status import (
    FileStatus,
    FlowTaskStatus,
    HostStatus,
    NodeStatus,
    RunStatus,
    TaskStatus,
    TimedRunStatus,
    VersionState,
)

__all__ = [
    "Account",
    "ApiToken",
    "AuditEvent",
    "Connection",
    "Credential",
    "CredentialKind",
    "DangerRule",
    "DangerRuleOverride",
    "DynamicGroup",
    "FileResult",
    "FileStatus",
    "Flow",
    "FlowCategory",
    "FlowTask",
    "FlowTaskStatus",
    "FlowVersion",
    "Group",
    "Host",
    "HostResult",
    "HostStatus",
    "IdempotencyKey",
    "JobInstance",
    "JobOperation",
    "JobPlan",
    "JobTemplate",
    "LaunchType",
    "Membership",
    "NamespaceValue",
    "NodeAttempt",
    "NodeState",
    "NodeStatus",
    "OnFailure",
    "Overlap",
    "Project",
    "ProjectVariable",
    "Repository",
    "RepositoryRevision",
    "Role",
    "RollingMode",
    "RuleAction",
    "RunOrigin",
    "RunStatus",
    "Script",
    "ScriptVersion",
    "Slice",
    "SourceType",
    "StepInstance",
    "StepType",
    "StoredFile",
    "TaskResult",
    "TaskStatus",
    "TimedJob",
    "TimedJobRun",
    "TimedRunStatus",
    "User",
    "VariableType",
    "VersionState",
]
