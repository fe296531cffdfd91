"""One module per wire format, decode and encode: v1 JSON, CSV, Open Inference Protocol (V2)
JSON; and how all of them write probabilities."""
