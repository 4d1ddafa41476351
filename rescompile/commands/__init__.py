"""The commands that are more than a call into the library: `check` and the CI gate `diff`."""
