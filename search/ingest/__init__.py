"""Ingest: the folder walk, the plan (what changed), the indexing pipeline, and keeping
FAISS in step with the catalog while it runs."""

from search.ingest.pipeline import Indexer, IndexReport, ProgressFn
from search.ingest.plan import Plan, Work, plan, plan_files
from search.ingest.prepare import IngestSettings, fingerprint
from search.ingest.runner import IngestRunner, requested_vector_settings
from search.ingest.walk import FoundFile, ScanResult, scan

__all__ = [
    "FoundFile",
    "IndexReport",
    "Indexer",
    "IngestRunner",
    "IngestSettings",
    "Plan",
    "ProgressFn",
    "ScanResult",
    "Work",
    "fingerprint",
    "plan",
    "plan_files",
    "requested_vector_settings",
    "scan",
]
