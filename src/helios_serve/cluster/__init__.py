"""What is really about many machines: a worker's queue loop and heartbeats (`worker`), the
upkeep every node runs (`maintenance`), the worker registry and the gateway's view of it
(`registry`, `health`), and the relays of real-time sessions to their workers
(`session_proxy`, `ws_relay`). The storage adapters it runs on live beside their seams
(`jobs.postgres`, `jobs.s3`); `compose` assembles gateways and workers. Never imports torch."""
