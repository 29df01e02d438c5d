"""The OpenAI-style HTTP API: request parsing and validation, the error envelope, routers.

Imports `helios_serve.core`, `helios_serve.errors`, `helios_serve.media` and FastAPI/Starlette
only; never the engine or torch.
"""
