"""The `tfops` commands, one module each. Each has `register(commands)`, which adds
its parser with a `handler(args) -> exit code`, and imports what is heavy (kopf,
the Kubernetes client, TensorFlow) only when it runs."""
