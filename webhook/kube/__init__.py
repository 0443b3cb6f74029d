"""Everything that talks to a Kubernetes API server: the client and the namespace sources."""
