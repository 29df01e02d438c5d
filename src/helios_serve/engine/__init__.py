"""The torch side: loading Helios checkpoints and running streams chunk by chunk."""
