"""Runs INSIDE the image, as `python -c`: submits a job with the image's own Ray
client, streams its logs to stdout, and ends with one marker line holding the
job's final status. Used for the local head `raybake submit` starts in the
same image, so the client's Ray and Python are the cluster's by construction.

Argument: JSON {"address", "entrypoint", "runtime_env", "metadata"}."""

import asyncio
import json
import logging
import sys
import time

from ray.job_submission import JobSubmissionClient

MARK = "@@RAYBAKE-JOB@@"


def main():
    args = json.loads(sys.argv[1])
    # The client's own INFO lines (uploading the package...) are not the job's output.
    for name in [n for n in logging.root.manager.loggerDict if n == "ray" or n.startswith("ray.")]:
        logging.getLogger(name).setLevel(logging.WARNING)
    client = JobSubmissionClient(args["address"])
    job_id = client.submit_job(entrypoint=args["entrypoint"], runtime_env=args["runtime_env"],
                               metadata=args["metadata"])

    async def follow():
        async for chunk in client.tail_job_logs(job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()

    asyncio.run(follow())
    status = client.get_job_status(job_id)
    while not status.is_terminal():
        time.sleep(0.5)
        status = client.get_job_status(job_id)
    info = client.get_job_info(job_id)
    sys.stdout.write("\n" + MARK + json.dumps({"job_id": job_id, "status": status.value,
                                                "message": info.message or ""}) + "\n")


if __name__ == "__main__":
    main()
