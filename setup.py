"""jaxdiff: diffusion models in JAX/Flax, correct to the equation and fast."""

from setuptools import find_packages, setup

# ONNX export, the ONNX Runtime sampler and qwix INT8. jax2onnx itself goes in with --no-deps (its
# releases pin orbax-checkpoint < 0.11.37 and would downgrade ours; it never imports orbax):
#   pip install --no-deps "jax2onnx>=0.17"
EXPORT = ["onnx>=1.17", "onnx-ir>=0.1.10", "onnxruntime>=1.20", "ml_dtypes>=0.5", "qwix>=0.1.8"]
# The inference server (jaxdiff.serve) and its safety hooks (jaxdiff.safety).
SERVE = [
    "fastapi>=0.115",
    "uvicorn>=0.30",
    "prometheus-client>=0.20",
    "PyWavelets>=1.6",
]
# Audio diffusion (jaxdiff.audio): mel spectrograms and Griffin-Lim (brings numba).
AUDIO = ["librosa>=0.10"]
TEST = [
    "pytest>=8",
    "pytest-xdist>=3",
    "scipy>=1.11",
    "torch>=2.4",  # CPU cross-checks; README pins the CPU wheel
    "diffusers>=0.30",
    "safetensors>=0.4",
    "playwright>=1.40",  # drives Debian's chromium; no browser download
    "nbmake>=1.5",
    "ipykernel>=6",
    "matplotlib>=3.7",
    "httpx>=0.27",  # fastapi's TestClient
    *EXPORT,
    *SERVE,
    *AUDIO,
]
EVAL = ["scipy>=1.11"]
NOTEBOOKS = ["matplotlib>=3.7", "nbformat>=5", "nbclient>=0.8", "ipykernel>=6"]
DEV = ["ruff>=0.6", "mypy>=1.10"]

setup(
    name="jaxdiff",
    version="0.1.0",
    description="Diffusion models in JAX/Flax: processes, losses, networks, samplers, training.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["jaxdiff", "jaxdiff.*"]),
    python_requires=">=3.11",
    install_requires=[
        "jax>=0.6",
        "flax>=0.10",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.12",
        "tensorflow-datasets>=4.9.7",
        "grain>=0.2.6",
        "chex>=0.1.88",
        "ml_collections>=1.0",
        "absl-py>=2.1",
        "numpy>=1.26",
        "tqdm>=4.66",
        "pillow>=10",
        "scikit-learn>=1.3",
        "scipy>=1.11",
        "tensorboardX>=2.6",
        "safetensors>=0.4",  # shipped weights (jaxdiff/weights), read without jax
    ],
    package_data={"jaxdiff": ["weights/*.safetensors", "weights/*.json", "serve/page.html"]},
    extras_require={
        "test": TEST,
        "eval": EVAL,
        "dev": DEV,
        "notebooks": NOTEBOOKS,
        "export": EXPORT,
        "serve": SERVE,
        "audio": AUDIO,
    },
)
