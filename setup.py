"""bort_jax: optimal subarchitecture extraction (FPTAS), Bort and Agora in JAX/Flax."""

import setuptools

setuptools.setup(
    name="bort_jax",
    version="0.1.0",
    description="Bort in JAX: FPTAS subarchitecture extraction, KD pretraining, Agora fine-tuning.",
    packages=setuptools.find_packages(include=["bort_jax", "bort_jax.*"]),
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.4.30",
        "flax>=0.8.5",
        "optax>=0.2.2",
        "orbax-checkpoint>=0.5.20",
        "ml-collections>=0.1.1",
        "absl-py>=1.4",
        "safetensors>=0.4",
        "tokenizers>=0.15",
        "huggingface_hub>=0.20",
        "numpy>=1.24",
        "matplotlib>=3.7",
        "tqdm>=4.60",
    ],
    extras_require={
        "dev": [
            "pytest>=7",
            "pytest-timeout>=2",
            "pytest-xdist>=3.5",
            "ruff==0.17.6",
            "nbclient>=0.9",
            "nbformat>=5.9",
            "ipykernel>=6.25",
        ],
        "tfds": ["tensorflow-datasets>=4.9", "tensorflow-cpu>=2.15"],
    },
)
