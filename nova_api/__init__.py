"""mininova REST API: validates, writes the DB, casts long work to the scheduler."""
