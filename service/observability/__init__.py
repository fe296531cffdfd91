"""How the service observes itself: Prometheus metrics, JSON-lines logs, the request context."""
