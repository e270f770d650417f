"""A VM's metadata on PostgreSQL under concurrency: many writers of new keys
at once against a metadata_items limit; exactly the limit's worth succeed
(the writers of one VM go one at a time behind its row lock), the others get
MetadataLimitExceeded, and what is stored is exactly what succeeded."""
import concurrent.futures

import pytest

from common import context, exception
from common.db import auth, quota_sets
from nova_api import vm_metadata, vm_service
from tests.conftest import Recorder
from tests.unit.conftest import register_blank_image

pytestmark = pytest.mark.real_services("postgresql")

MEMBER = context.RequestContext(project_id="p", user_id="u")
LIMIT = 5


def metadata(svc):
    """The API's metadata service on the same database and quota defaults."""
    return vm_metadata.VMMetadata(svc.db, svc.quota_defaults)



def test_concurrent_metadata_writers_never_pass_the_limit(pg_db, conf, tmp_path):
    register_blank_image(conf, pg_db, tmp_path)
    with pg_db.transaction() as s:
        auth.project_create(s, "p", project_id="p")
        quota_sets.project_set(s, "p", {"metadata_items": LIMIT})
    svc = vm_service.VMService(pg_db, Recorder(), Recorder())
    vm = svc.create(MEMBER, "web", "blank", "m1.tiny")["id"]

    def set_item(i):
        try:
            metadata(svc).set_item(MEMBER, vm, "k%02d" % i, "v")
            return "k%02d" % i
        except exception.MetadataLimitExceeded:
            return None
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        won = [k for k in pool.map(set_item, range(40)) if k]
    assert len(won) == LIMIT
    assert metadata(svc).get(MEMBER, vm) == {k: "v" for k in won}
