"""Job runners: the in-process queue (default) and, later, distributed workers."""
