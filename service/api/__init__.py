"""The APIs: HTTP routers v1 (friendly JSON/CSV), v2 (Open Inference Protocol), health, admin,
web (the page), docs (Swagger UI); grpc_v2, the Open Inference Protocol over gRPC."""
