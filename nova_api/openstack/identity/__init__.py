"""Keystone v3 subset under /identity: version discovery, tokens (password
and token methods, validate, revoke), the catalog, projects, oneself as a
user. One domain, ``default`` / ``Default``; roles admin => manager => member
=> reader."""
from nova_api.openstack.identity import projects, tokens, users, versions

BLUEPRINTS = (versions.bp, tokens.bp, projects.bp, users.bp)
