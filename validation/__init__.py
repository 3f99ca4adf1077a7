"""Exact reference solutions, distances between densities, and the experiment pipelines."""
