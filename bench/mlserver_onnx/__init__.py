"""A small onnxruntime runtime for Seldon MLServer (runs in MLServer's own virtualenv only)."""
