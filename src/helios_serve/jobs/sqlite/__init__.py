"""The SQLite adapter of `helios serve`: job records in the data directory."""
