"""The `/v1/videos` job domain: job records, their durable SQLite store and their files.

No HTTP and no engine here: `models` holds the pure vocabulary and transition table, `store`
persists jobs so they survive restarts (clean or `kill -9`), `files` owns each job's directory.
"""
