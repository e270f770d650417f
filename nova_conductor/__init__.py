"""The conductor: the only DB writer for computes (their reports and
heartbeats) and the orchestrator of multi-step work, like Nova's conductor."""
