"""Helpers every app may use, below all of them: who may do what, the upload checks, the API's documented
errors and the OpenAPI hooks, sending a task after commit. No models, no views."""
