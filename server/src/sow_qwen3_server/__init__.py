"""The Qwen3-ForcedAligner service's server side: launcher (tritonserver command line), supervisor, front proxy."""
