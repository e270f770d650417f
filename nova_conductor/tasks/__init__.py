"""Multi-step work the conductor orchestrates (Nova's ComputeTaskManager):
the compute stays a worker, the scheduler a placement service."""
