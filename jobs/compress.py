"""Ray job entrypoint for the batch compression job.

    ray job submit --working-dir . -- python jobs/compress.py --config jobs/example_job.yaml
    ray job submit --working-dir . -- python jobs/compress.py s3://in/ --out s3://out/job1/

Inside `ray job submit`, RAY_ADDRESS points at the cluster, so the job joins it instead of
starting a local Ray. Progress goes to the job log as plain lines (no terminal bar).
"""

from __future__ import annotations

import argparse
import sys

from pilc_ray.job.cli import add_compress_arguments, run_compress


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="jobs/compress.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_compress_arguments(p)
    a = p.parse_args(argv)
    if not a.no_progress:
        a.quiet = True  # log lines, not a progress bar, in a job's log
    return run_compress(a)


if __name__ == "__main__":
    sys.exit(main())
