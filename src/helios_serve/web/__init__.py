"""HTTP plumbing shared by the job API and real-time sessions: errors, JSON responses."""
