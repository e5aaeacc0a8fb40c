"""c10k: a Python toolkit and static web server for ten thousand to a million clients."""

__version__ = "0.1.0"
__all__ = ["__version__"]
