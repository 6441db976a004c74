"""Fine-tuning jobs: the record and its lifecycle, the Redis store, the queue, and recovery of lost work.

No torch here: the API accepts, lists, streams and cancels jobs with this package alone; the worker
(training/worker/) runs them with the same store and lifecycle.
"""
