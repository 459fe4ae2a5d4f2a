"""Everything that talks to another process over the network: the Kubernetes API
(`kube`), TF Serving's REST API (`tfserving`) and the memory guard's metric sources
(`memory_sources`). The pure core never imports from here (`make lint` checks it)."""
