"""Bundles: a folder for one consumer (web, mobile, genai, server) with a manifest of what it needs."""
