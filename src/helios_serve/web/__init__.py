"""HTTP plumbing shared by every app: the error map (the only place that knows statuses),
auth, CORS, request bodies, JSON responses, and the one hardened launcher (`server`)."""
