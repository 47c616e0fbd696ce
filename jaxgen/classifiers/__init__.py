"""jaxgen.classifiers."""
