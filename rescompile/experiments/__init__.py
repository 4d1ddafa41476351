"""Experiments users reproduce: the degradation study and gradient flow."""
