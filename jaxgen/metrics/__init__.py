"""jaxgen.metrics."""
