"""Reactor's Helios protocol: signalling routes, WebRTC peers, the wire formats, commands,
the session state machine and the session that applies them to a live stream."""
