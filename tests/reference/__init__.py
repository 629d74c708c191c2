"""Naive reference models: obviously correct, deliberately slow; tests only.

One module per structure family (heap, lru, sketch, kv, radix, bm25, ...).
"""
