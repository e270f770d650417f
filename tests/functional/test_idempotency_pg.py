"""X-Idempotency-Key on PostgreSQL: creates with one key racing through two
API services with engines (connection pools) of their own, as two API
processes would; per key exactly one VM, one build cast, one quota unit,
and every racer answered with that VM. Another body with a taken key: 409."""
import concurrent.futures
import threading

import pytest
import sqlalchemy as sa

from common import context, exception
from common.db import auth
from common.db.models import Instance, QuotaUsage
from common.db.session import Database
from nova_api import idempotency, vm_service
from tests.conftest import Recorder
from tests.unit.conftest import register_blank_image

pytestmark = pytest.mark.real_services("postgresql")

KEYS = 6
RACERS = 8  # per key, half through each "process"


def test_racing_creates_with_one_key_make_one_vm(pg_db, conf, tmp_path):
    register_blank_image(conf, pg_db, tmp_path)
    with pg_db.transaction() as s:
        auth.project_create(s, "p1", project_id="p1")
    second = Database(pg_db.url)  # the other API process's pool
    builds = [Recorder(), Recorder()]
    services = [vm_service.VMService(db, build, Recorder())
                for db, build in ((pg_db, builds[0]), (second, builds[1]))]
    start = threading.Barrier(KEYS * RACERS)
    body = {"name": None, "image": "blank", "flavor": "m1.tiny"}

    def create(i):
        key, racer = "key-%d" % (i // RACERS), i % RACERS
        name = "vm-" + key
        ctxt = context.RequestContext(project_id="p1", user_id="u1")
        start.wait(30)
        vm = services[racer % 2].create(
            ctxt, name, "blank", "m1.tiny", idempotency_key=key,
            request_hash=idempotency.body_hash(dict(body, name=name)))
        return key, (vm.id if hasattr(vm, "id") else vm["id"])

    try:
        with concurrent.futures.ThreadPoolExecutor(KEYS * RACERS) as pool:
            results = list(pool.map(create, range(KEYS * RACERS)))
        ids = {}
        for key, vm_id in results:
            ids.setdefault(key, set()).add(vm_id)
        assert all(len(v) == 1 for v in ids.values()), ids  # each racer got the one VM
        with pg_db.transaction() as s:
            live = s.execute(sa.select(Instance.id, Instance.name)
                             .where(Instance.deleted_at.is_(None))).all()
            used = s.execute(sa.select(sa.func.sum(QuotaUsage.instances))
                             .where(QuotaUsage.project_id == "p1")).scalar()
        assert sorted(i for i, _ in live) == sorted(v.pop() for v in ids.values())
        assert len(live) == KEYS and used == KEYS
        assert len(builds[0].calls) + len(builds[1].calls) == KEYS  # each built once

        ctxt = context.RequestContext(project_id="p1", user_id="u1")
        with pytest.raises(exception.IdempotencyKeyReused):
            services[1].create(ctxt, "other", "blank", "m1.tiny", idempotency_key="key-0",
                               request_hash=idempotency.body_hash(dict(body, name="other")))
    finally:
        second.dispose()
