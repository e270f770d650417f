"""INSERT ... ON CONFLICT DO UPDATE, on PostgreSQL and SQLite alike: a row
set whether or not it exists, in one statement, so that two concurrent
writers of the same key both succeed (the last one wins) instead of one
failing on the primary key."""
from sqlalchemy.dialects import postgresql, sqlite


def upsert(s, model, rows, update):
    """Insert ``rows`` (dicts of column values) into ``model``'s table; a
    row whose primary key exists gets its ``update`` columns set instead."""
    if not rows:
        return
    insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(model).values(rows)
    keys = [column.name for column in model.__table__.primary_key.columns]
    s.execute(statement.on_conflict_do_update(
        index_elements=keys, set_={column: statement.excluded[column] for column in update}))
