"""[api] unique_vm_name_scope on PostgreSQL under concurrency: many creates
of one name at once; exactly one wins per project (project), one in all
(global), every one (empty); the losers leave no row and no quota used."""
import concurrent.futures

import pytest
import sqlalchemy as sa

from common import context, exception
from common.db import auth
from common.db.models import Instance, QuotaUsage
from nova_api import vm_service
from tests.conftest import Recorder
from tests.unit.conftest import register_blank_image

pytestmark = pytest.mark.real_services("postgresql")

PROJECTS = ("p1", "p2")
PER_PROJECT = 8


@pytest.fixture
def creates(pg_db, conf, tmp_path):
    register_blank_image(conf, pg_db, tmp_path)
    with pg_db.transaction() as s:
        for project in PROJECTS:
            auth.project_create(s, project, project_id=project)

    def run(scope):
        """Create "web" PER_PROJECT times in each project at once; the
        outcomes ("won" or the exception's class name) per project."""
        svc = vm_service.VMService(pg_db, Recorder(), Recorder(), name_scope=scope)

        def create(project):
            ctxt = context.RequestContext(project_id=project, user_id="u-" + project)
            try:
                svc.create(ctxt, "web", "blank", "m1.tiny")
                return project, "won"
            except exception.MininovaException as e:
                return project, type(e).__name__
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(create, [p for p in PROJECTS for _ in range(PER_PROJECT)]))
        return {p: sorted(r for q, r in results if q == p) for p in PROJECTS}
    return run


def live_vms(db):
    with db.transaction() as s:
        return s.execute(sa.select(Instance.project_id, Instance.name)
                         .where(Instance.deleted_at.is_(None))).all()


def instances_used(db):
    with db.transaction() as s:
        return dict(s.execute(sa.select(QuotaUsage.project_id, sa.func.sum(QuotaUsage.instances))
                              .group_by(QuotaUsage.project_id)).all())


def test_project_scope_one_winner_per_project(creates, pg_db):
    outcome = creates("project")
    for project in PROJECTS:
        assert outcome[project] == ["DuplicateName"] * (PER_PROJECT - 1) + ["won"]
    assert sorted(live_vms(pg_db)) == [("p1", "web"), ("p2", "web")]
    assert instances_used(pg_db) == {"p1": 1, "p2": 1}


def test_global_scope_one_winner_in_all(creates, pg_db):
    outcome = creates("global")
    assert sum(r.count("won") for r in outcome.values()) == 1
    assert sum(r.count("DuplicateName") for r in outcome.values()) == 2 * PER_PROJECT - 1
    assert len(live_vms(pg_db)) == 1
    assert sum(instances_used(pg_db).values()) == 1


def test_empty_scope_everyone_wins(creates, pg_db):
    outcome = creates("")
    assert outcome == {p: ["won"] * PER_PROJECT for p in PROJECTS}
    assert len(live_vms(pg_db)) == 2 * PER_PROJECT
