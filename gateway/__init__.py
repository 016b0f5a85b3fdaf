"""The FastAPI edge: authenticated, validated produce; state queries; health and metrics."""
