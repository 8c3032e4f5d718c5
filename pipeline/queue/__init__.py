"""The asynchronous path: an embedded in-process worker by default, Celery on Redis when configured."""
