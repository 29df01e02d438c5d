"""Real-time sessions: a live stream the client steers while it plays.

- `realtime.reactor`: Reactor's protocol — WebRTC video plus commands and events on data
  channels, in JSON (JS SDK 2.9.0, >= 2.12) or protobuf `reactor_wire.v1` (reactor-sdk 1.x).
- `realtime.ws`: vLLM-Omni's `WS /v1/realtime/video` (fragmented MP4 over a WebSocket).
- Here, shared by both: the generation loop (`generation`, `driver`, `pacing`, `playout`,
  `steering`), the slot pool both draw from (`slots`), the knobs (`config`) and `app_wiring`.

aiortc is imported only inside this package; the engine is seen only through `core.protocols`.
The app is assembled in `helios_serve.compose.app.build_app` (routes from `app_wiring`).
"""
