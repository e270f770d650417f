"""``mininova-manage``: the operator's tools (db sync, accounts, images,
quotas, audit, doctor). They may use every service's client and the DB; no
daemon imports them."""
