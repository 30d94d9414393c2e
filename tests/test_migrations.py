"""Migrations keep what the database holds: on SQLite a changed table is built anew, and the rows that
refer to it must survive that."""

from __future__ import annotations

import dataclasses

from flask_migrate import downgrade, upgrade
from sqlalchemy import func, select

from app import create_app
from app.config import Settings
from app.extensions import db
from app.models import JobInstance, Project, StepInstance


def test_a_downgrade_and_upgrade_on_sqlite_keep_job_history(tmp_path):
    settings = dataclasses.replace(
        Settings.from_env(), data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'history.db'}"
    )
    app = create_app(settings)
    with app.app_context():
        upgrade()
        project = Project(name="kept")
        db.session.add(project)
        db.session.flush()
        job = JobInstance(project_id=project.id, name="run", kind="script_execution")
        job.steps.append(StepInstance(name="step", kind="script"))
        db.session.add(job)
        db.session.commit()
        db.session.remove()
        # 0010 is before the migrations that rebuild job_instance and host_result on SQLite.
        downgrade(revision="0010")
        upgrade()
        assert db.session.scalar(select(func.count()).select_from(JobInstance)) == 1
        assert db.session.scalar(select(func.count()).select_from(StepInstance)) == 1
        db.session.remove()
        db.engine.dispose()
