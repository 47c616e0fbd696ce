"""jaxgen.generative."""
