"""The Kubernetes CRI (gRPC) front end."""
