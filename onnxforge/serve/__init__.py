"""Serving: the continuous-batching engine (no HTTP), the OpenAI-compatible FastAPI app over it, and
its Ray Serve deployment."""
