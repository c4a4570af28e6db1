"""The FAISS vector index derived from the catalog."""

from indexes.vectors.index import VectorIndex, VectorSettings

__all__ = ["VectorIndex", "VectorSettings"]
