"""Examples that use pixelscope as a library (examples/service: a model service that logs its images)."""
