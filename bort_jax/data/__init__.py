"""Data for Bort pretraining and fine-tuning.

Submodules (import them explicitly, e.g. ``from bort_jax.data import mlm``):
  text      corpora (embedded, text files, TFDS), tokenization and fixed-length packing.
  mlm       BERT 80/10/10 masking, student/teacher vocabulary checks.
  batching  row helpers, the one stateless batch source ``epoch_batches``, the prefetcher.
"""
