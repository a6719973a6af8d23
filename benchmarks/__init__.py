"""Benchmarks of dhmrec_pyg: accuracy against the paper, speed, memory."""
