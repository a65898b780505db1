"""Embeddings: a model registry, batched inference, the embedding store's statistics."""
