"""Building, pretraining and loading models; every later stage treats them like hub models."""
