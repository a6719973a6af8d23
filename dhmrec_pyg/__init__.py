"""dhmrec_pyg: DHMRec and its baselines on PyTorch Geometric."""
__version__ = "0.1.0"
