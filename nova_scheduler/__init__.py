"""mininova scheduler daemon: places VMs on compute hosts; also hosts the
conductor, through which compute hosts report state without DB credentials."""
