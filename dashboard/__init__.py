"""Sessions, the agent workbench, supervisor views and the admin."""
