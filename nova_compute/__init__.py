"""mininova compute daemon: one per hypervisor host."""
