"""helios-serve: one engine for Helios video jobs and real-time sessions."""

__version__ = "0.1.0"
