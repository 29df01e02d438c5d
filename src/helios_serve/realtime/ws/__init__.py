"""vLLM-Omni's streaming endpoint `WS /v1/realtime/video`: `session.start`, interactions, and
the video as fragmented MP4 pieces paced to the client's playback."""
