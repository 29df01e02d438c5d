"""Reactor-compatible real-time sessions: WebRTC video plus commands and events on data channels,
in JSON (JS SDK 2.9.0, >= 2.12) or protobuf `reactor_wire.v1` (reactor-sdk 1.x), per connection.

aiortc is imported only inside this package; the engine is seen only through `core.protocols`.
Compose it onto an app with `helios_serve.realtime.app_wiring.install_realtime`.
"""
