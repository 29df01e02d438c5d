"""Reactor-compatible real-time sessions: WebRTC video plus JSON commands on a data channel.

aiortc is imported only inside this package; the engine is seen only through `core.protocols`.
Compose it onto an app with `helios_serve.realtime.app_wiring.install_realtime`.
"""
