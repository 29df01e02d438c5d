"""The `/v1/videos` job domain: job records, their files, and the runner.

No HTTP and no engine here. `models` holds the pure vocabulary and transition table;
`records` is the seam of durable records (and its vocabulary), written once in `sql` +
`lifecycle` over two adapters, `sqlite` (`helios serve`) and `postgres` (a cluster, with its
queue); `blobs` is the seam of stored files (a folder, or `s3`); `files` owns each job's
directory on this machine and `mirror` keeps it in step with the blob store.
"""
