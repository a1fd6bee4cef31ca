"""The study's figures and tables from a results database, and an offline HTML report."""

from sparsebench.report.build import build_report

__all__ = ["build_report"]
