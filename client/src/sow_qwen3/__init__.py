"""Client for the Qwen3-ForcedAligner Triton service (placeholder; see issue 3)."""
