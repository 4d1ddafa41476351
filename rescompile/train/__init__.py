"""Training: recipes, learning-rate schedules, the tf.data input, callbacks, plots, the run loop."""
