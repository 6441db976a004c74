"""Domain errors of fine-tuning jobs. They carry no HTTP; service/api/errors.py maps them to status codes."""


class JobError(Exception):
    """Base class of the jobs' errors."""


class InvalidJob(JobError):
    """A submission that cannot run: hyperparameters out of range, an unusable base or dataset."""


class InvalidHyperparameters(InvalidJob):
    """Hyperparameters out of range, unknown names, or a sweep that is too large."""


class JobNotFound(JobError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no fine-tuning job {job_id!r}")
        self.job_id = job_id


class JobNotCancellable(JobError):
    """Cancelling a job that already finished."""


class JobStoreUnavailable(JobError):
    """Redis (the job store and the queue) does not answer, or is not configured."""
