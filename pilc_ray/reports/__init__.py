"""Job reports: the index (and run records) streamed into one fixed-size dict, then rendered.

    from pilc_ray.reports import build_report
    summary = build_report("out/job")

`aggregate` builds the dict and writes report.json/report.html; `html` renders the page
(matplotlib, imported by name only), `compare` measures PNG/WebP/JPEG XL on a sample, and
`cli` is `pilc report`.
"""

from pilc_ray.reports.aggregate import build_report, write_report

__all__ = ["build_report", "write_report"]
