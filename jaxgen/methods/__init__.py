"""jaxgen.methods."""
