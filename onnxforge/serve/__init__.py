"""Serving: the continuous-batching engine (no HTTP), the OpenAI-compatible FastAPI app over it, its Ray Serve deployment."""
