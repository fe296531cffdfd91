"""HTTP routers: v1 (friendly JSON/CSV), v2 (Open Inference Protocol), health, admin."""
