"""/projects/{pid}/repositories: playbook repositories, their archives, syncs and playbooks."""

from __future__ import annotations

from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.auth import current_actor
from app.api.crud import project_resource
from app.api.launching import launched
from app.api.paging import filter_arguments
from app.models import Repository
from app.schemas.job import JobSchema
from app.schemas.repository import DiscoveryArgs, DiscoverySchema, RepositorySchema, SyncSchema
from app.services import records, repositories, repository_sync
from app.services.access import Action

blp = Blueprint("repositories", __name__, url_prefix="/api/v1/projects", description="Playbook repositories")
project_resource(
    blp,
    "repositories",
    Repository,
    RepositorySchema,
    create=lambda pid, data: repositories.create(current_actor(), pid, data),
    update=repositories.update,
    remove=repositories.remove,
    write=Action.ADMIN,
)

ARCHIVE_BODY = {
    "required": True,
    "description": "a .tar.gz, .tgz or .zip of the repository's files, as the raw body",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


@blp.route("/<int:pid>/repositories/<int:rid>/archive")
class Archive(MethodView):
    @blp.doc(requestBody=ARCHIVE_BODY)
    @blp.response(200, RepositorySchema)
    def post(self, pid: int, rid: int):
        """Upload the archive the next sync unpacks: streamed, checked entry by entry, kept when sound."""
        actor = current_actor()
        repository = records.get(Repository, rid, pid)
        # The archive's own limit replaces the one of JSON bodies; its bytes are counted as they arrive.
        request.max_content_length = None
        return repositories.receive_archive(actor, repository, request.content_length, request.stream)


@blp.route("/<int:pid>/repositories/<int:rid>/sync")
class Sync(MethodView):
    @blp.arguments(SyncSchema, required=False)
    @blp.response(202, JobSchema)
    def post(self, data: dict[str, Any], pid: int, rid: int):
        """Sync on a worker: the branch's newest commit, or the uploaded archive; answers with the job."""
        return launched(pid, data, lambda data: repository_sync.launch_sync(current_actor(), pid, rid, data))


@blp.route("/<int:pid>/repositories/<int:rid>/playbooks")
class Playbooks(MethodView):
    @filter_arguments(blp, DiscoveryArgs)
    @blp.response(200, DiscoverySchema)
    def get(self, args: dict[str, Any], pid: int, rid: int):
        """What a revision holds: its playbooks, every other YAML file with why it is not one, its
        inventories, and whether it has an ansible.cfg."""
        return repositories.discovery_of(current_actor(), pid, rid, args.get("revision"))
