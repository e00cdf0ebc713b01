"""Datasets: release readers, audio features, Parquet preparation, downloads."""
