"""Persisted jobs: model, SQLite queue with recovery, runners (one set of fields for every kind)."""

from appliance.jobs.model import Job, JobState, Progress
from appliance.jobs.queue import JobStore

__all__ = ["Job", "JobState", "JobStore", "Progress"]
