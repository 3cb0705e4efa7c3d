"""Two-line integrations with the job queues people already run: Celery, RQ,
Dramatiq and arq (each an optional extra, imported only when asked for), and
a bridge for hammerwork's own event stream."""
