"""fpkit's own experiments, one module each, registered under the ``fpkit.experiments`` entry points
(pyproject.toml) so that ``fpkit experiment list`` finds them without fpkit/ importing this layer."""
