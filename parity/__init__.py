"""Parity: compare Flux and PyTorch run logs (and the published figures) epoch by epoch."""
