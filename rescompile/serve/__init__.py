"""Serving: prediction and evaluation of a model on the user's data, and what this CPU offers."""
