"""Task definitions shared by training (``pipelines``) and serving (``services``).

Imports neither Prefect nor BentoML.
"""
