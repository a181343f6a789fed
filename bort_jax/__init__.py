"""bort_jax: the Bort trilogy (OSE FPTAS, Bort, Agora) in JAX/Flax.

Submodules are imported explicitly (``from bort_jax import arch``); importing the package pulls in
nothing heavy.
"""

__version__ = "0.1.0"
