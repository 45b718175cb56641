"""The worker side of the service: long work runs here, in RQ workers, never in the API.

- `worker.queues`: what the API calls (enqueue, job status, list, cancel); no torch.
- `worker.jobs`: the job functions RQ runs (`train_job`, `evaluate_job`).
- `worker.progress`: progress and cancel/interrupt flags in ``job.meta``.
- `worker.report`: the evaluation report (JSON, PNG figures, HTML).
- `worker.recovery`: re-runs the jobs of dead workers from their checkpoints.
- `worker.runner`, `worker.main`: the RQ worker class and the ``uvac-worker`` entry point.

Nothing is imported here, so importing `worker.queues` stays cheap for the API.
"""
