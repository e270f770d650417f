import pytest

from common import config
from common.db import migration
from common.db.session import Database


@pytest.fixture
def db(conf):
    url = config.database_url(conf)
    migration.db_sync(url)
    database = Database(url)
    yield database
    database.dispose()
