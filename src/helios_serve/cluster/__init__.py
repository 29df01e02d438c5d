"""Cluster mode: job records in PostgreSQL, files in an S3-compatible store, jobs dispatched to
GPU workers through a PostgreSQL queue (procrastinate). Loads no model and never imports torch:
`serve.py` and `cli.py` put it together with the engine."""
