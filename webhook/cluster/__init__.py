"""The cluster as we see it and touch it: the list+watch view, manifests as a view for offline
use, the Lease, and the leader's only writes (managed headless Services)."""
