"""Blob storage housekeeping: delete expired objects from a bucket."""
