"""Schemas of job templates, their plans, and launching them."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, post_dump, validate, validates_schema

from app.config import TIMEOUT_DEFAULT, TIMEOUT_MAX, TIMEOUT_MIN
from app.models import Role, RollingMode, StepType, VariableType
from app.schemas.fields import IDENTIFIER, Id, Integer, validate_plain_data
from app.schemas.job import ScriptSchema, TargetsSchema
from app.schemas.playbook_run import RELATIVE_PATH
from app.schemas.query import FilterArgs
from app.schemas.transfer import FileTransferSchema
from app.secrets import MASK

VARIABLE_TYPES = [str(kind) for kind in VariableType]
STEP_TYPES = [str(kind) for kind in StepType]
ROLLING_MODES = [str(mode) for mode in RollingMode]
STEPS_MAX = 100
# What a playbook step of a repository names beyond an inline playbook's fields.
REPOSITORY_FIELDS = (
    "repository_id",
    "playbook",
    "revision",
    "check",
    "diff",
    "verbosity",
    "become",
    "vault_credential_id",
)
KEY = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", error="use letters, digits, '.', '_' and '-'")
# The parts of a step that say what it does, one per step type.
BODIES = {
    StepType.SCRIPT: "script",
    StepType.FILE_TRANSFER: "transfer",
    StepType.PLAYBOOK: "playbook",
    StepType.MANUAL: "manual",
    StepType.TEMPLATE: "template",
}


class VariableSchema(Schema):
    name = fields.String(required=True, validate=[validate.Length(min=1, max=64), IDENTIFIER])
    type = fields.String(required=True, validate=validate.OneOf(VARIABLE_TYPES))
    default = fields.Raw(
        allow_none=True,
        load_default=None,
        metadata={
            "description": "string, secret, namespace: a string; array: a list of strings; host_list: "
            "{hosts, groups, dynamic_groups}. A secret's default is shown as ****** once set"
        },
    )
    required = fields.Boolean(
        load_default=False, metadata={"description": "a launch must end up with a value"}
    )
    changeable = fields.Boolean(
        load_default=True, metadata={"description": "a launch may give another value"}
    )
    description = fields.String(load_default="", validate=validate.Length(max=4096))


class StepTargetsSchema(TargetsSchema):
    variable = fields.String(
        validate=validate.Length(min=1, max=64), metadata={"description": "a host_list variable's name"}
    )

    class Meta:
        openapi = {"oneOf": [{"required": ["variable"]}, TargetsSchema.Meta.openapi]}

    @validates_schema
    def not_empty(self, data, **kwargs) -> None:
        listed = data["hosts"] or data["groups"] or data["dynamic_groups"]
        if "variable" in data and listed:
            raise ValidationError("name a host list variable or hosts and groups, not both", "variable")
        if "variable" not in data and not listed:
            raise ValidationError(
                "name at least one host, group or dynamic group, or a host list variable", "hosts"
            )


class RollingSchema(Schema):
    expression = fields.String(
        required=True,
        validate=validate.Length(min=1, max=1024),
        metadata={
            "description": 'batch sizes, counts or percentages, such as "1 10% 30% 100%"; the last repeats'
        },
    )
    mode = fields.String(
        load_default=RollingMode.PAUSE,
        validate=validate.OneOf(ROLLING_MODES),
        metadata={
            "description": "pause: a failed batch stops the step; ignore: roll on; "
            "confirm: wait for a confirmation between batches"
        },
    )


class ScriptBodySchema(ScriptSchema):
    params = fields.List(
        fields.String(validate=validate.Length(max=65536)),
        load_default=list,
        validate=validate.Length(max=256),
    )


class PlaybookBodySchema(Schema):
    content = fields.String(
        validate=validate.Length(min=1),
        metadata={"description": "the playbook's YAML, run unchanged (or repository_id and playbook)"},
    )
    repository_id = Id(strict=True, metadata={"description": "run a playbook of this repository"})
    playbook = fields.String(
        validate=[validate.Length(min=1, max=1024), RELATIVE_PATH],
        metadata={"description": "with repository_id: the playbook's path in the repository"},
    )
    revision = fields.String(
        allow_none=True,
        validate=validate.Length(min=7, max=64),
        metadata={"description": "with repository_id: a kept revision; default the current one"},
    )
    check = fields.Boolean(metadata={"description": "with repository_id: ansible-playbook --check"})
    diff = fields.Boolean(metadata={"description": "with repository_id: ansible-playbook --diff"})
    verbosity = Integer(strict=True, validate=validate.Range(0, 4))
    become = fields.Boolean(allow_none=True, metadata={"description": "override the account's become"})
    vault_credential_id = Id(strict=True, allow_none=True, metadata={"description": "a vault credential"})
    extra_vars = fields.Dict(
        keys=fields.String(validate=IDENTIFIER), load_default=dict, validate=validate_plain_data
    )
    tags = fields.List(fields.String(validate=validate.Length(min=1, max=255)), load_default=list)
    skip_tags = fields.List(fields.String(validate=validate.Length(min=1, max=255)), load_default=list)
    limit = fields.String(allow_none=True, load_default=None, validate=validate.Length(min=1, max=4096))

    class Meta:
        openapi = {
            "oneOf": [
                {
                    "required": ["content"],
                    "not": {"anyOf": [{"required": [name]} for name in REPOSITORY_FIELDS]},
                },
                {"required": ["repository_id", "playbook"], "not": {"required": ["content"]}},
            ]
        }

    @validates_schema
    def one_source(self, data, **kwargs) -> None:
        if ("content" in data) == ("repository_id" in data):
            raise ValidationError("give the playbook's content, or a repository_id and playbook", "content")
        if "content" in data:
            extra = next((name for name in REPOSITORY_FIELDS if name in data), None)
            if extra:
                raise ValidationError(f"an inline playbook has no {extra}", extra)
        elif "playbook" not in data:
            raise ValidationError("name the repository's playbook", "playbook")

    @validates_schema
    def no_connection_variables(self, data, **kwargs) -> None:
        for name in data.get("extra_vars", {}):
            if name.startswith("ansible_"):
                raise ValidationError(f"{name}: ansible_* variables are set by Opsflow", "extra_vars")


class ConfirmersSchema(Schema):
    users = fields.List(fields.String(validate=validate.Length(min=1, max=64)), load_default=list)
    roles = fields.List(
        fields.String(validate=validate.OneOf([str(role) for role in Role])), load_default=list
    )


class ManualBodySchema(Schema):
    message = fields.String(load_default="", validate=validate.Length(max=4096))
    confirmers = fields.Nested(
        ConfirmersSchema,
        load_default=dict,
        metadata={"description": "who may confirm: these users or roles; none listed: any operator"},
    )


class IncludeBodySchema(Schema):
    template_id = Id(
        required=True,
        strict=True,
        metadata={"description": "a template of the project, run in this step's place"},
    )


TransferBodySchema = FileTransferSchema(
    exclude=("name", "targets", "account_id", "timeout", "forks", "idempotency_key")
)


class TemplateStepSchema(Schema):
    key = fields.String(
        validate=[validate.Length(min=1, max=64), KEY],
        metadata={
            "description": "the step's identity across changes (plans choose steps by it); default step-N"
        },
    )
    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    type = fields.String(required=True, validate=validate.OneOf(STEP_TYPES))
    targets = fields.Nested(StepTargetsSchema)
    account_id = Id(strict=True, allow_none=True, load_default=None)
    timeout = Integer(
        strict=True, load_default=TIMEOUT_DEFAULT, validate=validate.Range(TIMEOUT_MIN, TIMEOUT_MAX)
    )
    forks = Integer(strict=True, allow_none=True, load_default=None, validate=validate.Range(min=1))
    ignore_error = fields.Boolean(
        load_default=False, metadata={"description": "a failure lets the job go on"}
    )
    rolling = fields.Nested(RollingSchema, allow_none=True, load_default=None)
    script = fields.Nested(ScriptBodySchema)
    transfer = fields.Nested(TransferBodySchema)
    playbook = fields.Nested(PlaybookBodySchema)
    manual = fields.Nested(ManualBodySchema)
    template = fields.Nested(IncludeBodySchema)

    @validates_schema
    def one_body(self, data, **kwargs) -> None:
        kind = data.get("type")
        if kind is None:
            return
        body = BODIES[StepType(kind)]
        for other in BODIES.values():
            if other != body and other in data:
                raise ValidationError(f"a {kind} step has no {other}", other)
        if kind in (StepType.MANUAL, StepType.TEMPLATE):
            if "targets" in data or data.get("rolling"):
                where = "targets" if "targets" in data else "rolling"
                raise ValidationError(f"a {kind} step names no hosts of its own", where)
            if kind == StepType.TEMPLATE and "template" not in data:
                raise ValidationError("name the template to include", "template")
            return
        if body not in data:
            raise ValidationError(f"a {kind} step needs {body}", body)
        if "targets" not in data:
            raise ValidationError("name the step's targets", "targets")
        if data.get("rolling") and kind == StepType.PLAYBOOK:
            raise ValidationError("script and file transfer steps roll; a playbook has serial", "rolling")


class TemplateSchema(Schema):
    id = fields.Integer(dump_only=True)
    project_id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    description = fields.String(validate=validate.Length(max=4096))
    variables = fields.List(fields.Nested(VariableSchema))
    steps = fields.List(
        fields.Nested(TemplateStepSchema), required=True, validate=validate.Length(min=1, max=STEPS_MAX)
    )
    version = fields.Integer(dump_only=True, metadata={"description": "raised by every change"})
    created_by = fields.String(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)

    @post_dump(pass_original=True)
    def mask_secrets(self, data: dict, template, **kwargs) -> dict:
        data["variables"] = masked(data["variables"], template.secret_default_values)
        return data


class PlanSchema(Schema):
    id = fields.Integer(dump_only=True)
    project_id = fields.Integer(dump_only=True)
    template_id = Id(required=True, strict=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    description = fields.String(validate=validate.Length(max=4096))
    enabled_steps = fields.List(
        fields.String(),
        metadata={"description": "keys of the steps the plan runs; default every step"},
    )
    values = fields.Dict(
        keys=fields.String(),
        metadata={"description": "the plan's own variable values; secrets are shown as ******"},
    )
    template_version = fields.Integer(dump_only=True)
    out_of_date = fields.Boolean(
        dump_only=True, metadata={"description": "the template changed since the plan was made or synced"}
    )
    steps = fields.List(
        fields.Dict(), dump_only=True, metadata={"description": "the steps as the plan has them"}
    )
    variables = fields.List(fields.Nested(VariableSchema), dump_only=True)
    created_by = fields.String(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)

    @post_dump(pass_original=True)
    def mask_secrets(self, data: dict, plan, **kwargs) -> dict:
        data["values"] = {**data["values"], **dict.fromkeys(plan.own_secret_values, MASK)}
        data["variables"] = masked(data["variables"], plan.secret_default_values)
        return data


def masked(definitions: list[dict], secret_defaults: dict[str, str]) -> list[dict]:
    """A secret's default shows as ****** when it has one."""
    return [
        {**definition, "default": MASK if definition["name"] in secret_defaults else None}
        if definition["type"] == VariableType.SECRET
        else definition
        for definition in definitions
    ]


class PlanArgs(FilterArgs):
    template_id = Id(metadata={"description": "the plans of this template"})


class LaunchSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=255))
    variables = fields.Dict(
        keys=fields.String(), load_default=dict, metadata={"description": "values for this launch, by name"}
    )
    callback_url = fields.Url(
        schemes={"http", "https"},
        require_tld=False,
        validate=validate.Length(max=2048),
        metadata={"description": "POSTed the job's final status when it ends"},
    )
    idempotency_key = fields.String(
        validate=validate.Length(min=1, max=255),
        metadata={"description": "a retried launch with the same key returns the first job instance"},
    )


class ExportArgs(FilterArgs):
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "yaml"]))


class ImportResultSchema(Schema):
    templates = fields.List(fields.Nested(TemplateSchema))
    plans = fields.List(fields.Nested(PlanSchema))


class ImportTextSchema(Schema):
    """A document sent as text in a JSON body, as inventories are."""

    format = fields.String(
        validate=validate.OneOf(["json", "yaml"]), metadata={"description": "json or yaml"}
    )
    content = fields.String(required=True, metadata={"description": "the exported document's text"})
