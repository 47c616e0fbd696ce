"""jaxgen.plot."""
