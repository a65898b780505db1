"""The pipeline: the step contract (steps.py) and the one table of stages (stages.py) that the
CLI, the DVC file, the Prefect flows and the tests all read."""
