"""Vocabulary shared by every layer: plain types, no torch, no HTTP."""
