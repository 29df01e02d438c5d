"""The PostgreSQL adapters of cluster mode: job records (`store`), the queue (`queue`), the
pool and schema they share."""
