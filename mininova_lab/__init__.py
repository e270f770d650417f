"""Real mininova stacks and simulated hosts for the tests and the bench: the
daemons as processes on the real RabbitMQ, PostgreSQL and libvirtd, reached
with mininova's own credentials. Not installed: used from a checkout."""
