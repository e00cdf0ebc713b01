"""east_ray: audio embeddings as teachers for music classification, as a Ray study.

Data flows one way: release → Parquet → trials → results → tables. See README.md.
"""

__version__ = "0.1.0"
