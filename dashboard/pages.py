"""HTML pages: the agent workbench and the supervisor dashboard."""
