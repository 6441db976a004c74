"""The fine-tuning worker: a Celery app (``imgcls worker``) that runs the jobs the API accepts."""
