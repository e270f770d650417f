"""Pieces shared by the three mininova daemons: config, context, errors, DB, RPC."""
