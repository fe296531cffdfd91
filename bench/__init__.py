"""Serving benchmark: our service against Seldon MLServer and the raw onnxruntime limit."""
