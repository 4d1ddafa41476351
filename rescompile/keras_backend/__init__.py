"""The Keras backend: the IR printed as a standalone Keras module, built, loaded, frozen, saved."""
