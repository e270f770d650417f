"""The scheduler: places VMs on compute hosts (filters, weighers, an atomic
claim in the database)."""
